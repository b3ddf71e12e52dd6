import { Dec } from '@metering/pricing';
import type { ListReservationsQuery, Reservation, ReservationRef, ReservationStatus } from '@metering/domain';
import { Db, perCallStatement, statement, Tx } from './db';
import { SETTINGS_ARE } from './settings-epoch.repo';

/** SQL of the reservations table. Runs inside the caller's transaction; no business rules. */

export interface ReservationRow {
  account_id: string;
  reservation_id: string;
  idempotency_key: string;
  user_id: string;
  status: ReservationStatus;
  held_messages: string;
  held_tokens: string;
  held_cost: string;
  period_day: string;
  request_hash: string;
  create_time: Date;
  expire_time: Date;
  finish_time: Date | null;
  charge_id: string | null;
  /** What it holds of credit grants (migration 20261202100000_credits). */
  credit_holds?: Array<{ grant_id: string; amount: string }> | string;
  /** The call's tags and API key (migration 20261206214500_tags). */
  tags?: Record<string, string> | string;
  api_key_id?: string;
  /** The declared tags' values it holds on (migration 20261207100000_scoped_budgets); NULL: none declared. */
  dimensions?: Record<string, string> | string | null;
}

const holdsOf = (h: ReservationRow['credit_holds']) => (typeof h === 'string' ? (JSON.parse(h) as Array<{ grant_id: string; amount: string }>) : (h ?? []));

export const fromReservationRow = (r: ReservationRow): Reservation => {
  const holds = holdsOf(r.credit_holds);
  return {
    accountId: r.account_id,
    reservationId: r.reservation_id,
    idempotencyKey: r.idempotency_key,
    userId: r.user_id,
    status: r.status,
    heldMessages: BigInt(r.held_messages),
    heldTokens: BigInt(r.held_tokens),
    heldCost: new Dec(r.held_cost),
    periodDay: r.period_day,
    requestHash: r.request_hash,
    createTime: r.create_time,
    expireTime: r.expire_time,
    finishTime: r.finish_time ?? undefined,
    chargeId: r.charge_id ?? undefined,
    ...(holds.length ? { creditHolds: holds.map((h) => ({ grantId: h.grant_id, amount: new Dec(h.amount) })) } : {}),
    tags: (typeof r.tags === 'string' ? JSON.parse(r.tags) : r.tags) ?? {},
    apiKeyId: r.api_key_id ?? '',
    ...(r.dimensions ? { dimensions: typeof r.dimensions === 'string' ? JSON.parse(r.dimensions) : r.dimensions } : {}),
  };
};

export const toReservationRow = (r: Reservation): ReservationRow => ({
  account_id: r.accountId,
  reservation_id: r.reservationId,
  idempotency_key: r.idempotencyKey,
  user_id: r.userId,
  status: r.status,
  held_messages: r.heldMessages.toString(),
  held_tokens: r.heldTokens.toString(),
  held_cost: r.heldCost.toFixed(),
  period_day: r.periodDay,
  request_hash: r.requestHash,
  create_time: r.createTime,
  expire_time: r.expireTime,
  finish_time: r.finishTime ?? null,
  charge_id: r.chargeId ?? null,
  credit_holds: (r.creditHolds ?? []).map((h) => ({ grant_id: h.grantId, amount: h.amount.toFixed() })),
  tags: r.tags ?? {},
  api_key_id: r.apiKeyId ?? '',
  dimensions: r.dimensions ?? null,
});

/**
 * Inserts a reservation unless its idempotency key is taken (then false; a
 * concurrent insert of the key waits for the other transaction). Fails with
 * SettingsChangedError unless the settings epoch is still `settingsEpoch`.
 */
export async function insertReservation(tx: Tx, r: Reservation, settingsEpoch: string | undefined): Promise<boolean> {
  const row = toReservationRow(r);
  const columns = Object.keys(row).join(', ');
  const { rows } = await statement(
    tx,
    'insert_reservation',
    `INSERT INTO reservations (${columns}) SELECT ${columns} FROM json_populate_record(NULL::reservations, ?::json) WHERE ${SETTINGS_ARE}
     ON CONFLICT (account_id, idempotency_key) DO NOTHING RETURNING reservation_id`,
    [JSON.stringify(row), settingsEpoch ?? null],
  );
  return rows.length === 1;
}

export async function findReservationByKey(db: Db | Tx, accountId: string, idempotencyKey: string): Promise<Reservation | undefined> {
  const row = await db('reservations').where({ account_id: accountId, idempotency_key: idempotencyKey }).first();
  return row ? fromReservationRow(row) : undefined;
}

export async function findReservation(db: Db | Tx, ref: ReservationRef): Promise<Reservation | undefined> {
  const row = await db('reservations').where({ account_id: ref.accountId, reservation_id: ref.reservationId }).first();
  return row ? fromReservationRow(row) : undefined;
}

/** A page of an account's open reservations (held, not past expiry at `now`), in (expire time, id) order. */
export async function listOpenReservations(db: Db, q: ListReservationsQuery, now: Date): Promise<Reservation[]> {
  const query = db('reservations').where({ account_id: q.accountId, status: 'held' }).where('expire_time', '>', now);
  if (q.userId !== undefined) query.where('user_id', q.userId);
  if (q.after) query.whereRaw('(expire_time, reservation_id) > (?, ?::uuid)', [q.after.expireTime, q.after.reservationId]);
  const rows: ReservationRow[] = await query.orderBy(['expire_time', 'reservation_id']).limit(q.pageSize + 1);
  return rows.map(fromReservationRow);
}

/**
 * Locks reservations for update in (account, id) order, so that concurrent settlers cannot
 * deadlock: one statement per account, filtered on account_id equality (on Citus a row lock
 * must route to one shard: FOR UPDATE across shards is refused), accounts in id order.
 */
export async function lockReservations(tx: Tx, refs: ReservationRef[]): Promise<Reservation[]> {
  const byAccount = new Map<string, string[]>();
  for (const r of refs) byAccount.set(r.accountId, [...(byAccount.get(r.accountId) ?? []), r.reservationId]);
  const locked: Reservation[] = [];
  for (const accountId of [...byAccount.keys()].sort()) {
    const { rows } = await perCallStatement(
      tx,
      `SELECT r.* FROM reservations r WHERE r.account_id = ? AND r.reservation_id = ANY(?::uuid[]) ORDER BY r.reservation_id FOR UPDATE OF r`,
      [accountId, byAccount.get(accountId)],
    );
    locked.push(...(rows as ReservationRow[]).map(fromReservationRow));
  }
  return locked;
}

/**
 * Locks up to `limit` held reservations of one account whose expiry has passed,
 * skipping rows another transaction holds (it is settling, releasing or expiring
 * them), in id order. Per account (account_id equality): on Citus a row lock
 * routes to one shard.
 */
export async function lockDueReservations(tx: Tx, now: Date, limit: number, accountId: string): Promise<Reservation[]> {
  const rows: ReservationRow[] = await tx('reservations')
    .where({ account_id: accountId, status: 'held' })
    .where('expire_time', '<=', now)
    .orderBy('reservation_id')
    .limit(limit)
    .forUpdate()
    .skipLocked();
  return rows.map(fromReservationRow);
}

/**
 * Up to `limit` accounts with held reservations past their expiry, after `after`, in id order,
 * read without locks (on Citus this read spans every shard; the locks are then taken per account).
 */
export async function accountsWithDueReservations(db: Db, now: Date, limit: number, after = ''): Promise<string[]> {
  const rows: Array<{ account_id: string }> = await db('reservations')
    .distinct('account_id')
    .where('status', 'held')
    .where('expire_time', '<=', now)
    .where('account_id', '>', after)
    .orderBy('account_id')
    .limit(limit);
  return rows.map((r) => r.account_id);
}
