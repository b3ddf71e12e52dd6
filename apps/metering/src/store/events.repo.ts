import { alertData, type ChargeEvent, type ChargeEventKind, type ChargeRecord, type LedgerEvent, type Limit, type WebhookEndpoint } from '@metering/domain';
import { Dec } from '@metering/pricing';
import { ChargeRow, fromChargeRow, toChargeRow } from './charges.repo';
import { fromGrantJson, toGrantJson } from './credits.repo';
import { Db, statement, Tx } from './db';
import { fromReservationRow, ReservationRow, toReservationRow } from './reservations.repo';

/** SQL of the event outbox (charge_events) and its per-account sequences. No business rules. */

export const EVENTS_CHANNEL = 'metering_events';

/** An event to append (the ledger decides them): a charge recorded or re-rated, a reservation expired, a soft limit crossed. */
export type NewEvent = LedgerEvent;

const accountOf = (e: NewEvent) =>
  'charge' in e ? e.charge.accountId : 'reservation' in e ? e.reservation.accountId : 'grant' in e ? e.grant.accountId : 'balance' in e ? e.balance.accountId : 'alert' in e ? e.alert.accountId : 'endpoint' in e ? e.endpoint.accountId : e.softLimit.limit.accountId;

function payloadOf(e: NewEvent): object {
  if ('charge' in e) return toChargeRow(e.charge);
  if ('alert' in e) return alertData(e.alert);
  if ('endpoint' in e) return { ...e.endpoint, secret: undefined };
  if ('reservation' in e) return toReservationRow(e.reservation);
  if ('grant' in e) return toGrantJson(e.grant);
  if ('balance' in e) return { available: e.balance.available.toFixed(), threshold: e.balance.threshold?.toFixed() ?? null };
  const { userId, limit, periodStart, used } = e.softLimit;
  return {
    user_id: userId,
    period_start: periodStart,
    limit: { ...limit, amount: limit.amount.toFixed() },
    used: { messages: used.messageCount.toString(), tokens: used.totalTokens.toString(), cost: used.totalCost.toFixed() },
  };
}

/**
 * Appends events in the caller's transaction. Must be its last write: each
 * account's sequence row is taken (in account order) and held until commit,
 * so sequence order is commit order and there are no gaps. Notifies
 * listeners of each account on commit (Postgres NOTIFY).
 */
export async function appendEvents(tx: Tx, events: NewEvent[]): Promise<void> {
  if (events.length === 0) return;
  // One statement (one round trip).
  await statement(tx, 'append_events', `WITH ${OUTBOX_CTES('TRUE')} SELECT pg_notify(?, account_id) FROM seq`, [outboxParam(events), EVENTS_CHANNEL]);
}

/**
 * The events as the one jsonb parameter of OUTBOX_CTES. `chargeJson`: a charge's payload already
 * made as JSON for the same statement (its insert's row), used as it is rather than made again.
 */
export const outboxParam = (events: NewEvent[], chargeJson?: (c: ChargeRecord) => string | undefined): string => {
  const json = events.map((e) => {
    const made = chargeJson && 'charge' in e ? chargeJson(e.charge) : undefined;
    return made ? `{"account_id":${JSON.stringify(accountOf(e))},"kind":${JSON.stringify(e.kind)},"payload":${made}}` : JSON.stringify({ account_id: accountOf(e), kind: e.kind, payload: payloadOf(e) });
  });
  return `[${json.join(',')}]`;
};

/**
 * The CTEs that append events (one `?` parameter: outboxParam) inside a larger
 * statement: take each account's sequence row for its count of events (in
 * account order), number the events from there in the order given, and insert
 * them. `after` is a condition that makes them run after the statement's
 * other writes (the outbox is the last write). The caller selects
 * pg_notify(channel, account_id) FROM seq to notify each account on commit.
 */
export const OUTBOX_CTES = (after: string) => `ev AS (
       SELECT e->>'account_id' AS account_id, e->>'kind' AS kind, e->'payload' AS payload, ord
       FROM jsonb_array_elements(?::jsonb) WITH ORDINALITY AS x(e, ord)
       WHERE ${after}
     ), seq AS (
       INSERT INTO event_sequences AS s (account_id, last_sequence)
         SELECT account_id, count(*) FROM ev GROUP BY account_id ORDER BY account_id
       ON CONFLICT (account_id) DO UPDATE SET last_sequence = s.last_sequence + excluded.last_sequence
       RETURNING account_id, last_sequence
     ), inserted AS (
       INSERT INTO charge_events (account_id, sequence, kind, payload)
         SELECT ev.account_id,
                seq.last_sequence - count(*) OVER w + row_number() OVER (w ORDER BY ev.ord),
                ev.kind, ev.payload
         FROM ev JOIN seq USING (account_id)
         WINDOW w AS (PARTITION BY ev.account_id)
       RETURNING 1
     )`;

/** An alert back from its stored JSON (alertData). */
export function alertOfData(d: Record<string, string>): NonNullable<ChargeEvent['alert']> {
  return {
    accountId: d.account_id, ruleId: d.rule_id, kind: d.kind as 'limit' | 'spend' | 'balance', description: d.description, direction: d.direction as 'triggered' | 'resolved',
    userId: d.user_id, ...(d.period ? { period: d.period as 'day' | 'month' } : {}), periodStart: d.period_start ?? '', measure: d.measure as 'messages' | 'tokens' | 'cost',
    threshold: new Dec(d.threshold), percentage: d.percentage ? new Dec(d.percentage) : undefined, limitAmount: d.limit_amount ? new Dec(d.limit_amount) : undefined,
    ...(d.used !== undefined ? { used: new Dec(d.used) } : {}), ...(d.available !== undefined ? { available: new Dec(d.available) } : {}),
    changedByUserId: d.changed_by_user_id, ...(d.period_ended === 'true' ? { periodEnded: true } : {}),
  };
}

interface EventRow {
  account_id: string;
  seq: string;
  kind: ChargeEventKind;
  payload: Record<string, unknown>;
  created_at: Date;
}

const revive = (p: Record<string, unknown>, dates: string[]) => ({ ...p, ...Object.fromEntries(dates.filter((d) => p[d] != null).map((d) => [d, new Date(p[d] as string)])) });

function fromEventRow(r: EventRow): ChargeEvent {
  const event: ChargeEvent = { accountId: r.account_id, sequence: BigInt(r.seq), kind: r.kind, eventTime: r.created_at };
  if (r.kind === 'grant_created' || r.kind === 'grant_expired') event.grant = fromGrantJson(r.payload as unknown as Parameters<typeof fromGrantJson>[0]);
  else if (r.kind === 'balance_low' || r.kind === 'balance_exhausted') {
    const p = r.payload as { available: string; threshold: string | null };
    event.balance = { accountId: r.account_id, available: new Dec(p.available), ...(p.threshold != null ? { threshold: new Dec(p.threshold) } : {}) };
  } else if (r.kind === 'alert_triggered' || r.kind === 'alert_resolved') event.alert = alertOfData(r.payload as Record<string, string>);
  else if (r.kind === 'webhook_endpoint_disabled') event.webhookEndpoint = revive(r.payload, ['createTime', 'updateTime']) as unknown as WebhookEndpoint;
  else if (r.kind === 'reservation_expired') event.reservation = fromReservationRow(revive(r.payload, ['create_time', 'expire_time', 'finish_time']) as unknown as ReservationRow);
  else if (r.kind === 'soft_limit_exceeded') {
    const p = r.payload as { user_id: string; period_start: string; limit: Limit & { amount: string; updateTime?: string }; used: { messages: string; tokens: string; cost: string } };
    event.softLimit = {
      userId: p.user_id,
      periodStart: p.period_start,
      limit: { ...p.limit, amount: new Dec(p.limit.amount), updateTime: p.limit.updateTime ? new Date(p.limit.updateTime) : undefined },
      used: { messageCount: BigInt(p.used.messages), totalTokens: BigInt(p.used.tokens), totalCost: new Dec(p.used.cost) },
    };
  } else event.charge = fromChargeRow(revive(r.payload, ['usage_time', 'record_time', 'rate_time']) as unknown as ChargeRow);
  return event;
}

/** Up to `limit` events of an account after a sequence, in sequence order. */
export async function readEvents(db: Db, accountId: string, after: bigint, limit: number): Promise<ChargeEvent[]> {
  const rows: EventRow[] = await db('charge_events')
    .select('account_id', db.raw('sequence::text AS seq'), 'kind', 'payload', 'created_at')
    .where('account_id', accountId)
    .where('sequence', '>', after.toString())
    .orderBy('sequence')
    .limit(limit);
  return rows.map(fromEventRow);
}

/** The account's oldest event still kept (older ones may have been deleted by retention), if any. */
export async function firstSequence(db: Db, accountId: string): Promise<bigint | undefined> {
  const row = await db('charge_events').select(db.raw('min(sequence)::text AS s')).where('account_id', accountId).first();
  return row?.s == null ? undefined : BigInt(row.s);
}

/** The accounts that have events (the retention sweep visits each). */
export async function eventAccounts(db: Db): Promise<string[]> {
  const rows: { account_id: string }[] = await db('event_sequences').select('account_id').orderBy('account_id');
  return rows.map((r) => r.account_id);
}

/**
 * Deletes up to `limit` of an account's oldest events, lowest sequences first,
 * below its oldest event that is newer than `seconds` (by the database's clock);
 * returns how many. created_at is the writer's transaction start, not its
 * commit, so an event can be older than the one before it: deleting by
 * created_at alone could delete N+1 and keep N, a hole a reader would step
 * over. Deleting a prefix of the sequence never leaves one below a kept event.
 */
export async function deleteOldestEvents(db: Db, accountId: string, seconds: number, limit: number): Promise<number> {
  const { rows } = await db.raw(
    `DELETE FROM charge_events WHERE account_id = ? AND sequence IN (
       SELECT sequence FROM charge_events
       WHERE account_id = ?
         AND sequence < coalesce(
           (SELECT min(sequence) FROM charge_events WHERE account_id = ? AND created_at >= now() - make_interval(secs => ?)),
           (SELECT max(sequence) + 1 FROM charge_events WHERE account_id = ?))
       ORDER BY sequence LIMIT ?
     ) RETURNING 1`,
    [accountId, accountId, accountId, seconds, accountId, limit],
  );
  return rows.length;
}

/** The sequence of an account's last event (0 when none). */
export async function lastSequence(db: Db, accountId: string): Promise<bigint> {
  const row = await db('event_sequences').select(db.raw('last_sequence::text AS s')).where('account_id', accountId).first();
  return BigInt(row?.s ?? 0);
}
