import { Dec } from '@metering/pricing';
import type { ListAccountsQuery } from '@metering/domain';
import { Db, Tx } from './db';
import { bumpSettingsEpoch } from './settings-epoch.repo';

/** SQL of accounts: their settings row, and the operator's list of every account the service knows. No business rules. */

export async function upsertAccount(tx: Tx, accountId: string, timeZone: string): Promise<{ timeZone: string; updatedAt: Date }> {
  // The time is a parameter: Citus refuses a non-immutable function (now()) in DO UPDATE SET on a distributed table.
  const now = new Date();
  const [row] = await tx('accounts')
    .insert({ account_id: accountId, time_zone: timeZone, updated_at: now })
    .onConflict('account_id')
    .merge({ time_zone: timeZone, updated_at: now })
    .returning(['time_zone', 'updated_at']);
  await bumpSettingsEpoch(tx);
  return { timeZone: row.time_zone, updatedAt: row.updated_at };
}

export async function readAccount(db: Db, accountId: string): Promise<{ timeZone: string; updatedAt: Date } | undefined> {
  const row = await db('accounts').select('time_zone', 'updated_at').where({ account_id: accountId }).first();
  return row ? { timeZone: row.time_zone, updatedAt: row.updated_at } : undefined;
}

/**
 * A page of the accounts the service knows, in id order: those with settings, limits, API keys
 * or events (every charge, re-rating and expiry makes one, so every account that was ever
 * charged has an event_sequences row). Each is read from its table's primary key.
 */
export async function listAccounts(db: Db, q: ListAccountsQuery): Promise<Array<{ accountId: string; timeZone?: string; updatedAt?: Date }>> {
  // Prefix match on the primary keys: [prefix, prefix + U+FFFF) (ids are ASCII; see checkId).
  const from = q.after ?? '';
  const prefix = q.accountIdPrefix;
  const known = ['accounts', 'event_sequences', 'limits', 'api_keys']
    .map((table) => `SELECT account_id FROM ${table} WHERE account_id > :from AND account_id >= :prefix AND account_id < :prefixEnd`)
    .join(' UNION ');
  const { rows } = await db.raw(
    `SELECT k.account_id, a.time_zone, a.updated_at FROM (${known}) k LEFT JOIN accounts a USING (account_id) ORDER BY k.account_id LIMIT :limit`,
    { from, prefix, prefixEnd: `${prefix}\uffff`, limit: q.pageSize + 1 },
  );
  return (rows as Array<{ account_id: string; time_zone: string | null; updated_at: Date | null }>).map((r) => ({
    accountId: r.account_id,
    timeZone: r.time_zone ?? undefined,
    updatedAt: r.updated_at ?? undefined,
  }));
}

/** The account-wide month counters of these accounts (account id -> the month starting on that day). */
export async function readMonthCounters(db: Db, months: Array<{ accountId: string; monthStart: string }>): Promise<Map<string, { messages: bigint; unpriced: bigint; cost: Dec }>> {
  const found = new Map<string, { messages: bigint; unpriced: bigint; cost: Dec }>();
  if (months.length === 0) return found;
  const { rows } = await db.raw(
    `SELECT c.account_id, c.message_count::text, c.unpriced_message_count::text, c.total_cost::text
       FROM usage_counters c JOIN unnest(?::text[], ?::date[]) AS m(account_id, period_start) USING (account_id, period_start)
      WHERE c.period = 'month' AND c.user_id = ''`,
    [months.map((m) => m.accountId), months.map((m) => m.monthStart)],
  );
  for (const r of rows as Array<{ account_id: string; message_count: string; unpriced_message_count: string; total_cost: string }>) {
    found.set(r.account_id, { messages: BigInt(r.message_count), unpriced: BigInt(r.unpriced_message_count), cost: new Dec(r.total_cost) });
  }
  return found;
}
