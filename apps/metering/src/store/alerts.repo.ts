import {
  Alert,
  alertData,
  AlertRule,
  Delivery,
  DeliveryAttempt,
  DeliveryStatus,
  LedgerEvent,
  LimitAlertTarget,
  ListDeliveriesQuery,
  SpendAlertTarget,
  TEST_EVENT_TYPE,
  WebhookEndpoint,
  webhookBody,
  WebhookFormat,
} from '@metering/domain';
import { Dec, formatDecimal } from '@metering/pricing';
import { randomUUID } from 'node:crypto';
import { Db, statement, Tx } from './db';
import { bumpSettingsEpoch } from './settings-epoch.repo';
import { alertOfData, EVENTS_CHANNEL, OUTBOX_CTES, outboxParam } from './events.repo';

/**
 * SQL of alert rules, webhook endpoints, deliveries and their attempts. No
 * business rules (libs/domain/src/alerts.ts has them).
 */

// ---- Rules ----

interface RuleRow {
  account_id: string;
  rule_id: string;
  description: string;
  kind: AlertRule['kind'];
  spec: string | Record<string, unknown>;
  created_at: Date;
  updated_at: Date;
}

type Spec = {
  limit?: Omit<LimitAlertTarget, 'percentages'> & { percentages: string[] };
  spend?: Omit<SpendAlertTarget, 'amounts'> & { amounts: string[] };
  balance?: { amounts: string[] };
};

const specOf = (r: AlertRule): Spec =>
  r.limit
    ? { limit: { ...r.limit, percentages: r.limit.percentages.map((p) => p.toFixed()) } }
    : r.spend
      ? { spend: { ...r.spend, amounts: r.spend.amounts.map((a) => a.toFixed()) } }
      : r.balance
        ? { balance: { amounts: r.balance.amounts.map((a) => a.toFixed()) } }
        : {};

/** A rule from its row (spec as JSON text or as parsed). */
export function fromRuleRow(r: RuleRow): AlertRule {
  const spec = (typeof r.spec === 'string' ? JSON.parse(r.spec) : r.spec) as Spec;
  return {
    accountId: r.account_id,
    ruleId: r.rule_id,
    description: r.description,
    kind: r.kind,
    ...(spec.limit ? { limit: { ...spec.limit, percentages: spec.limit.percentages.map((p) => new Dec(p)) } } : {}),
    ...(spec.spend ? { spend: { ...spec.spend, amounts: spec.spend.amounts.map((a) => new Dec(a)) } } : {}),
    ...(spec.balance ? { balance: { amounts: spec.balance.amounts.map((a) => new Dec(a)) } } : {}),
    createTime: r.created_at ? new Date(r.created_at) : undefined,
    updateTime: r.updated_at ? new Date(r.updated_at) : undefined,
  };
}

const RULE_COLUMNS = ['account_id', 'rule_id', 'description', 'kind', 'spec', 'created_at', 'updated_at'];

export async function insertRule(tx: Tx, rule: AlertRule, now: Date): Promise<AlertRule> {
  const [row] = await tx('alert_rules')
    .insert({ account_id: rule.accountId, rule_id: rule.ruleId, description: rule.description, kind: rule.kind, spec: JSON.stringify(specOf(rule)), created_at: now, updated_at: now })
    .returning(RULE_COLUMNS);
  await bumpSettingsEpoch(tx);
  return fromRuleRow(row);
}

export async function updateRule(tx: Tx, rule: AlertRule, now: Date): Promise<AlertRule | undefined> {
  const [row] = await tx('alert_rules')
    .where({ account_id: rule.accountId, rule_id: rule.ruleId, kind: rule.kind })
    .update({ description: rule.description, spec: JSON.stringify(specOf(rule)), updated_at: now })
    .returning(RULE_COLUMNS);
  if (row) await bumpSettingsEpoch(tx);
  return row ? fromRuleRow(row) : undefined;
}

export async function ruleKind(db: Db | Tx, accountId: string, ruleId: string): Promise<string | undefined> {
  const row = await db('alert_rules').select('kind').where({ account_id: accountId, rule_id: ruleId }).first();
  return row?.kind;
}

export async function deleteRule(tx: Tx, accountId: string, ruleId: string): Promise<boolean> {
  const deleted = (await tx('alert_rules').where({ account_id: accountId, rule_id: ruleId }).delete().returning('rule_id')).length > 0;
  if (deleted) await bumpSettingsEpoch(tx);
  return deleted;
}

export async function listRules(db: Db | Tx, accountId: string, ruleId?: string): Promise<AlertRule[]> {
  const q = db('alert_rules').select(RULE_COLUMNS).where({ account_id: accountId });
  if (ruleId) q.where({ rule_id: ruleId });
  const rows: RuleRow[] = await q.orderBy(['created_at', 'rule_id']);
  return rows.map(fromRuleRow);
}

export async function countRules(tx: Tx, accountId: string): Promise<number> {
  const row = await tx('alert_rules').count<{ n: string }[]>({ n: '*' }).where({ account_id: accountId }).first();
  return Number(row?.n ?? 0);
}

// ---- Endpoints ----

interface EndpointRow {
  account_id: string;
  endpoint_id: string;
  url: string;
  description: string;
  enabled: boolean;
  event_types: string[];
  format: WebhookFormat;
  secret: string;
  disabled_reason: string;
  created_at: Date;
  updated_at: Date;
}

const ENDPOINT_COLUMNS = ['account_id', 'endpoint_id', 'url', 'description', 'enabled', 'event_types', 'format', 'secret', 'disabled_reason', 'created_at', 'updated_at'];

/** An endpoint from its row; its secret only when asked (just created or rotated). */
export function fromEndpointRow(r: EndpointRow, withSecret = false): WebhookEndpoint {
  return {
    accountId: r.account_id,
    endpointId: r.endpoint_id,
    url: r.url,
    description: r.description,
    enabled: r.enabled,
    eventTypes: r.event_types ?? [],
    format: r.format,
    ...(withSecret ? { secret: r.secret } : {}),
    disabledReason: r.disabled_reason,
    createTime: r.created_at ? new Date(r.created_at) : undefined,
    updateTime: r.updated_at ? new Date(r.updated_at) : undefined,
  };
}

export async function insertEndpoint(tx: Tx, e: WebhookEndpoint & { secret: string }, now: Date): Promise<WebhookEndpoint> {
  const [row] = await tx('webhook_endpoints')
    .insert({
      account_id: e.accountId, endpoint_id: e.endpointId, url: e.url, description: e.description, enabled: e.enabled,
      event_types: e.eventTypes, format: e.format, secret: e.secret, disabled_reason: '', created_at: now, updated_at: now,
    })
    .returning(ENDPOINT_COLUMNS);
  return fromEndpointRow(row, true);
}

/** Changes an endpoint's settings; enabling it clears the reason it was disabled for. */
export async function updateEndpoint(tx: Tx, e: Omit<WebhookEndpoint, 'disabledReason'>, now: Date): Promise<WebhookEndpoint | undefined> {
  const [row] = await tx('webhook_endpoints')
    .where({ account_id: e.accountId, endpoint_id: e.endpointId })
    .update({
      url: e.url, description: e.description, enabled: e.enabled, event_types: e.eventTypes, format: e.format, updated_at: now,
      ...(e.enabled ? { disabled_reason: '' } : {}),
    })
    .returning(ENDPOINT_COLUMNS);
  return row ? fromEndpointRow(row) : undefined;
}

export async function rotateSecret(tx: Tx, accountId: string, endpointId: string, secret: string, now: Date): Promise<WebhookEndpoint | undefined> {
  const [row] = await tx('webhook_endpoints').where({ account_id: accountId, endpoint_id: endpointId }).update({ secret, updated_at: now }).returning(ENDPOINT_COLUMNS);
  return row ? fromEndpointRow(row, true) : undefined;
}

export async function deleteEndpoint(tx: Tx, accountId: string, endpointId: string): Promise<boolean> {
  return (await tx('webhook_endpoints').where({ account_id: accountId, endpoint_id: endpointId }).delete().returning('endpoint_id')).length > 0;
}

export async function listEndpoints(db: Db | Tx, accountId: string, endpointId?: string): Promise<WebhookEndpoint[]> {
  const q = db('webhook_endpoints').select(ENDPOINT_COLUMNS).where({ account_id: accountId });
  if (endpointId) q.where({ endpoint_id: endpointId });
  const rows: EndpointRow[] = await q.orderBy(['created_at', 'endpoint_id']);
  return rows.map((r) => fromEndpointRow(r));
}

export async function countEndpoints(tx: Tx, accountId: string): Promise<number> {
  const row = await tx('webhook_endpoints').count<{ n: string }[]>({ n: '*' }).where({ account_id: accountId }).first();
  return Number(row?.n ?? 0);
}

/** Disables an endpoint that is enabled, with a reason; returns it when this call disabled it. */
export async function disableEndpoint(tx: Tx, accountId: string, endpointId: string, reason: string, now: Date): Promise<WebhookEndpoint | undefined> {
  const [row] = await tx('webhook_endpoints').where({ account_id: accountId, endpoint_id: endpointId, enabled: true }).update({ enabled: false, disabled_reason: reason, updated_at: now }).returning(ENDPOINT_COLUMNS);
  return row ? fromEndpointRow(row) : undefined;
}

// ---- Alert events and their deliveries ----

const isAlert = (e: LedgerEvent): e is Extract<LedgerEvent, { alert: Alert }> => e.kind === 'alert_triggered' || e.kind === 'alert_resolved';
export const hasAlerts = (events: LedgerEvent[]) => events.some(isAlert);

const typeOf = (e: Extract<LedgerEvent, { alert: Alert }>) => (e.kind === 'alert_triggered' ? 'alert.triggered' : 'alert.resolved');

/**
 * Appends events to the outbox (OUTBOX_CTES: the last write of the
 * transaction, holding each account's sequence row until commit), queues one
 * delivery of each alert event to every enabled endpoint of its account that
 * takes its type, and keeps the standing alerts (a triggered one is kept, a
 * resolved one dropped: see resolveEndedPeriods), in one statement. The body
 * (the exact bytes signed) is made here, with the transaction's time. A
 * standing alert's row belongs to the counter row it measures, which the
 * transaction has locked before: writers of one standing alert are already
 * serialized there.
 */
const APPEND_WITH_DELIVERIES_SQL = `WITH ${OUTBOX_CTES('TRUE')}, queued AS (
       INSERT INTO webhook_deliveries (account_id, delivery_id, endpoint_id, event_type, payload, status, attempt_count, next_attempt_at, window_start, created_at)
         SELECT w.account_id, 'msg_' || gen_random_uuid()::text, w.endpoint_id, d.event_type, d.payload, 'pending', 0, d.at, d.at, d.at
           FROM jsonb_to_recordset(?::jsonb) AS d(account_id text, event_type text, payload text, at timestamptz, ord int)
           JOIN webhook_endpoints w ON w.account_id = d.account_id AND w.enabled AND (cardinality(w.event_types) = 0 OR d.event_type = ANY(w.event_types))
          WHERE w.account_id = ANY(?::text[]) AND (SELECT count(*) FROM inserted) >= 0
          ORDER BY d.ord, w.endpoint_id
       RETURNING 1
     ), standing AS (
       SELECT * FROM jsonb_to_recordset(?::jsonb) AS s(account_id text, rule_id uuid, user_id text, period text, period_start date, threshold text, direction text, alert jsonb, at timestamptz)
        WHERE (SELECT count(*) FROM queued) >= 0
     ), fired AS (
       INSERT INTO alert_states (account_id, rule_id, user_id, period, period_start, threshold, alert, created_at)
         SELECT account_id, rule_id, user_id, period, period_start, threshold, alert, at FROM standing WHERE direction = 'triggered'
       ON CONFLICT DO NOTHING
       RETURNING 1
     ), cleared AS (
       DELETE FROM alert_states t USING standing s
        WHERE s.direction = 'resolved' AND t.account_id = ANY(?::text[]) AND t.account_id = s.account_id AND t.rule_id = s.rule_id AND t.user_id = s.user_id
          AND t.period = s.period AND t.period_start = s.period_start AND t.threshold = s.threshold
       RETURNING 1
     )
  SELECT pg_notify(?, account_id) FROM seq WHERE (SELECT count(*) FROM fired) + (SELECT count(*) FROM cleared) >= 0`;

const stateRow = (a: Alert, at: Date) => ({
  account_id: a.accountId, rule_id: a.ruleId, user_id: a.userId, period: a.period, period_start: a.periodStart, threshold: formatDecimal(a.threshold),
  direction: a.direction, alert: alertData(a), at: at.toISOString(),
});

export async function appendEventsWithDeliveries(tx: Tx, events: LedgerEvent[], now: Date): Promise<void> {
  const alerts = events.filter(isAlert);
  const deliveries = alerts.map((e, ord) => ({ account_id: e.alert.accountId, event_type: typeOf(e), payload: webhookBody(typeOf(e), now, alertData(e.alert)), at: now.toISOString(), ord }));
  // BALANCE alerts have no period: what stands of them is kept on the account's credit row (CREDIT_CTES), not here.
  const states = alerts.filter((e) => e.alert.period !== undefined).map((e) => stateRow(e.alert, now));
  // The alerts' accounts, for account_id = ANY($accounts) (on Citus: the accounts' shards only).
  const accounts = [...new Set(alerts.map((e) => e.alert.accountId))].sort();
  await statement(tx, 'append_events_deliveries', APPEND_WITH_DELIVERIES_SQL, [outboxParam(events), JSON.stringify(deliveries), accounts, JSON.stringify(states), accounts, EVENTS_CHANNEL]);
}

/** Standing alerts whose period may have ended (period_start up to `upTo`, oldest first), with their account's time zone. */
export async function standingAlerts(db: Db, upTo: string, limit: number): Promise<Array<{ alert: Alert; timeZone?: string }>> {
  const { rows } = await db.raw(
    `SELECT s.alert, a.time_zone FROM alert_states s LEFT JOIN accounts a ON a.account_id = s.account_id
      WHERE s.period_start <= ?::date ORDER BY s.period_start, s.account_id LIMIT ?`,
    [upTo, limit],
  );
  return (rows as Array<{ alert: Record<string, string>; time_zone: string | null }>).map((r) => ({ alert: alertOfData(r.alert), timeZone: r.time_zone ?? undefined }));
}

/** Drops standing alerts (locked by the caller's counters first); returns those this call dropped. */
export async function dropStanding(tx: Tx, alerts: Alert[]): Promise<Alert[]> {
  if (alerts.length === 0) return [];
  const { rows } = await tx.raw(
    `DELETE FROM alert_states t USING jsonb_to_recordset(?::jsonb) AS s(account_id text, rule_id uuid, user_id text, period text, period_start date, threshold text)
      WHERE t.account_id = ANY(?::text[]) AND t.account_id = s.account_id AND t.rule_id = s.rule_id AND t.user_id = s.user_id AND t.period = s.period AND t.period_start = s.period_start AND t.threshold = s.threshold
     RETURNING t.alert`,
    [JSON.stringify(alerts.map((a) => stateRow(a, new Date(0)))), [...new Set(alerts.map((a) => a.accountId))].sort()],
  );
  return (rows as Array<{ alert: Record<string, string> }>).map((r) => alertOfData(r.alert));
}

/** Drops a rule's standing alerts (the rule changed or went away: its old thresholds no longer stand). */
export async function dropRuleStanding(tx: Tx, accountId: string, ruleId: string): Promise<void> {
  await tx('alert_states').where({ account_id: accountId, rule_id: ruleId }).delete();
}

// ---- Deliveries ----

interface DeliveryRow {
  account_id: string;
  delivery_id: string;
  endpoint_id: string;
  event_type: string;
  payload: string;
  status: DeliveryStatus;
  attempt_count: number;
  next_attempt_at: Date;
  window_start: Date;
  created_at: Date;
}

const DELIVERY_COLUMNS = ['account_id', 'delivery_id', 'endpoint_id', 'event_type', 'payload', 'status', 'attempt_count', 'next_attempt_at', 'window_start', 'created_at'];

export const fromDeliveryRow = (r: DeliveryRow): Delivery => ({
  accountId: r.account_id,
  deliveryId: r.delivery_id,
  endpointId: r.endpoint_id,
  eventType: r.event_type,
  status: r.status,
  attemptCount: Number(r.attempt_count),
  createTime: new Date(r.created_at),
  nextAttemptTime: r.status === 'pending' ? new Date(r.next_attempt_at) : undefined,
  payload: r.payload,
});

/** Queues a test delivery to one endpoint (enabled or not). */
export async function insertTestDelivery(tx: Tx, endpoint: WebhookEndpoint, now: Date): Promise<Delivery> {
  const [row] = await tx('webhook_deliveries')
    .insert({
      account_id: endpoint.accountId, delivery_id: `msg_${randomUUID()}`, endpoint_id: endpoint.endpointId, event_type: TEST_EVENT_TYPE,
      payload: webhookBody(TEST_EVENT_TYPE, now, { account_id: endpoint.accountId, endpoint_id: endpoint.endpointId }),
      status: 'pending', attempt_count: 0, next_attempt_at: now, window_start: now, created_at: now,
    })
    .returning(DELIVERY_COLUMNS);
  return fromDeliveryRow(row);
}

export async function findDelivery(db: Db | Tx, accountId: string, deliveryId: string): Promise<Delivery | undefined> {
  const row: DeliveryRow | undefined = await db('webhook_deliveries').select(DELIVERY_COLUMNS).where({ account_id: accountId, delivery_id: deliveryId }).first();
  return row ? fromDeliveryRow(row) : undefined;
}

export async function listDeliveries(db: Db, q: ListDeliveriesQuery): Promise<Delivery[]> {
  const query = db('webhook_deliveries').select(DELIVERY_COLUMNS).where({ account_id: q.accountId });
  if (q.endpointId) query.where({ endpoint_id: q.endpointId });
  if (q.status) query.where({ status: q.status });
  if (q.after) query.whereRaw('(created_at, delivery_id) < (?, ?)', [q.after.createTime, q.after.deliveryId]);
  const rows: DeliveryRow[] = await query.orderBy([{ column: 'created_at', order: 'desc' }, { column: 'delivery_id', order: 'desc' }]).limit(q.pageSize + 1);
  return rows.map(fromDeliveryRow);
}

/** Makes a delivery pending again, due now, with a new retry window (its id, and so its webhook-id, kept). */
export async function redeliver(tx: Tx, accountId: string, deliveryId: string, now: Date): Promise<Delivery | undefined> {
  const [row] = await tx('webhook_deliveries')
    .where({ account_id: accountId, delivery_id: deliveryId })
    .update({ status: 'pending', next_attempt_at: now, window_start: now })
    .returning(DELIVERY_COLUMNS);
  return row ? fromDeliveryRow(row) : undefined;
}

interface AttemptRow {
  delivery_id: string;
  attempt: number;
  started_at: Date;
  latency_ms: number;
  http_status: number;
  error: string;
  response_excerpt: string;
  success: boolean;
  next_attempt_at: Date | null;
}

export async function listAttempts(db: Db, accountId: string, deliveryId: string): Promise<DeliveryAttempt[]> {
  const rows: AttemptRow[] = await db('webhook_delivery_attempts').select('*').where({ account_id: accountId, delivery_id: deliveryId }).orderBy(['started_at', 'attempt']);
  return rows.map((r) => ({
    deliveryId: r.delivery_id,
    attempt: Number(r.attempt),
    startTime: new Date(r.started_at),
    latencyMs: Number(r.latency_ms),
    httpStatus: Number(r.http_status),
    error: r.error,
    responseExcerpt: r.response_excerpt,
    success: r.success,
    nextAttemptTime: r.next_attempt_at ? new Date(r.next_attempt_at) : undefined,
  }));
}

/** A claimed delivery with what its attempt needs. */
export interface ClaimedDelivery extends Delivery {
  windowStart: Date;
  url: string;
  format: WebhookFormat;
  secret: string;
}

/**
 * Claims up to `limit` due deliveries (the dispatcher's sweep), skipping rows
 * another transaction holds: each gets its attempt number and a lease
 * (next_attempt_at = now + leaseMs) that keeps other processes off it until
 * the attempt is logged, or, if this process dies, until the lease ends.
 * Deliveries of a disabled endpoint wait (a test event excepted). Account by
 * account: the accounts with due deliveries are read first without locks (soonest
 * due first), then each account's are claimed by a statement filtered on
 * account_id equality (on Citus, row locks route to one shard).
 */
export async function claimDue(db: Db, now: Date, leaseMs: number, limit: number): Promise<ClaimedDelivery[]> {
  const { rows: accounts } = await db.raw(
    `SELECT account_id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ?
      GROUP BY account_id ORDER BY min(next_attempt_at), account_id LIMIT ?`,
    [now, limit],
  );
  const claimed: ClaimedDelivery[] = [];
  for (const { account_id: accountId } of accounts as Array<{ account_id: string }>) {
    if (claimed.length >= limit) break;
    claimed.push(...(await claimDueOf(db, accountId, now, leaseMs, limit - claimed.length)));
  }
  return claimed;
}

async function claimDueOf(db: Db, accountId: string, now: Date, leaseMs: number, limit: number): Promise<ClaimedDelivery[]> {
  const { rows } = await db.raw(
    `WITH due AS (
       SELECT d.account_id, d.delivery_id FROM webhook_deliveries d
         JOIN webhook_endpoints w ON w.account_id = d.account_id AND w.endpoint_id = d.endpoint_id
        WHERE d.account_id = ? AND w.account_id = ? AND d.status = 'pending' AND d.next_attempt_at <= ? AND (w.enabled OR d.event_type = ?)
        ORDER BY d.next_attempt_at
        LIMIT ?
        FOR UPDATE OF d SKIP LOCKED
     )
     UPDATE webhook_deliveries d SET attempt_count = d.attempt_count + 1, next_attempt_at = ?
       FROM due, webhook_endpoints w
      WHERE d.account_id = ? AND w.account_id = ? AND d.account_id = due.account_id AND d.delivery_id = due.delivery_id AND w.endpoint_id = d.endpoint_id
     RETURNING d.*, w.url, w.format, w.secret`,
    [accountId, accountId, now, TEST_EVENT_TYPE, limit, new Date(now.getTime() + leaseMs), accountId, accountId],
  );
  return (rows as Array<DeliveryRow & { url: string; format: WebhookFormat; secret: string }>).map((r) => ({
    ...fromDeliveryRow(r),
    windowStart: new Date(r.window_start),
    url: r.url,
    format: r.format,
    secret: r.secret,
  }));
}

/** Logs an attempt. */
export async function insertAttempt(tx: Tx, accountId: string, a: DeliveryAttempt): Promise<void> {
  await tx('webhook_delivery_attempts').insert({
    account_id: accountId, delivery_id: a.deliveryId, attempt: a.attempt, started_at: a.startTime, latency_ms: a.latencyMs, http_status: a.httpStatus,
    error: a.error, response_excerpt: a.responseExcerpt, success: a.success, next_attempt_at: a.nextAttemptTime ?? null,
  });
}

/**
 * The outcome of a claimed attempt: delivered (whatever attempt delivered it),
 * or, if no later claim took the delivery over, due again at `next` or failed
 * for good. Returns whether the row changed.
 */
export async function finishAttempt(tx: Tx, accountId: string, deliveryId: string, attempt: number, outcome: { delivered: true } | { delivered: false; next?: Date }): Promise<boolean> {
  const q = tx('webhook_deliveries').where({ account_id: accountId, delivery_id: deliveryId, status: 'pending' });
  if (outcome.delivered) return (await q.update({ status: 'delivered' }).returning('delivery_id')).length > 0;
  q.where({ attempt_count: attempt });
  const set = outcome.next ? { next_attempt_at: outcome.next } : { status: 'failed' };
  return (await q.update(set).returning('delivery_id')).length > 0;
}
