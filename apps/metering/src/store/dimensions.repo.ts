import type { ChargeType, DimensionSettings, RollupSums, UsageGroupField, UsageGroupKey, UsageQuery, UsageRollup } from '@metering/domain';
import { ROLLUP_INT_SUMS, ROLLUP_MONEY_SUMS } from '@metering/domain';
import { Dec } from '@metering/pricing';
import type { Knex } from 'knex';
import { Db, Tx } from './db';
import { bumpSettingsEpoch } from './settings-epoch.repo';
import { ROLLUP_COLUMNS } from './usage.repo';

/** SQL of declared dimensions (account_dimensions) and of the dimension rollups (dimension_usage; ledger.repo.ts writes them). No business rules. */

/** An account's declared dimensions, or undefined when it never declared any. */
export async function findDimensions(db: Db | Tx, accountId: string): Promise<DimensionSettings | undefined> {
  const row = await db('account_dimensions').where({ account_id: accountId }).first();
  return row ? { accountId: row.account_id, tagKeys: row.tag_keys, maxValuesPerDay: row.max_values_per_day, updateTime: row.update_time } : undefined;
}

/**
 * Declares an account's dimensions (replacing what was declared) and moves the settings epoch
 * (besides the table's trigger, which a Citus database drops: store/citus.ts).
 */
export async function upsertDimensions(tx: Tx, d: DimensionSettings, now: Date): Promise<DimensionSettings> {
  const [row] = await tx('account_dimensions')
    .insert({ account_id: d.accountId, tag_keys: d.tagKeys, max_values_per_day: d.maxValuesPerDay, update_time: now })
    .onConflict('account_id')
    .merge(['tag_keys', 'max_values_per_day', 'update_time'])
    .returning(['account_id', 'tag_keys', 'max_values_per_day', 'update_time']);
  await bumpSettingsEpoch(tx);
  return { accountId: row.account_id, tagKeys: row.tag_keys, maxValuesPerDay: row.max_values_per_day, updateTime: row.update_time };
}

const SUM_COLUMNS = Object.values(ROLLUP_COLUMNS);
const COLUMN_OF: Record<UsageGroupField, string> = { user: 'user_id', provider: 'provider', model: 'model', charge_type: 'charge_type', api_key: 'api_key_id' };

function fromSums(r: Record<string, string | null>): RollupSums {
  const sums = {} as RollupSums;
  for (const k of ROLLUP_INT_SUMS) sums[k] = BigInt(r[ROLLUP_COLUMNS[k]] ?? 0);
  for (const k of ROLLUP_MONEY_SUMS) sums[k] = new Dec(r[ROLLUP_COLUMNS[k]] ?? 0);
  return sums;
}

const TABLE_OF: Record<UsageRollup, string> = { daily: 'daily_usage', dimension_hour: 'dimension_usage', dimension_day: 'dimension_usage_daily' };

/**
 * The rollup rows a query matches: one account, its local days, its filters
 * (each table's primary key starts with (account, day)), in the rollup the
 * domain picked (usageRollupOf): daily_usage, dimension_usage (hours), or
 * dimension_usage_daily (its day-level sums, whose rows do not multiply by the
 * hours of a day).
 */
function matching(db: Db, q: UsageQuery, rollup: UsageRollup): Knex.QueryBuilder {
  const query = db(TABLE_OF[rollup]).where('account_id', q.accountId).whereBetween('usage_date', [q.startDate, q.endDate]);
  if (q.userId !== undefined) query.where('user_id', q.userId);
  if (q.provider !== undefined) query.where('provider', q.provider);
  if (q.model !== undefined) query.where('model', q.model);
  if (q.chargeType !== undefined) query.where('charge_type', q.chargeType);
  if (q.apiKeyId !== undefined) query.where('api_key_id', q.apiKeyId);
  if (Object.keys(q.tagFilters).length > 0) query.whereRaw('dims @> ?::jsonb', [JSON.stringify(q.tagFilters)]);
  return query;
}

/** The period a row counts in, as text that sorts in time order. */
function periodOf(db: Db, q: UsageQuery): Knex.Raw {
  switch (q.granularity) {
    case 'hour':
      return db.raw(`to_char(usage_date, 'YYYY-MM-DD') || 'T' || lpad(hour::text, 2, '0')`);
    case 'day':
      return db.raw(`to_char(usage_date, 'YYYY-MM-DD')`);
    case 'month':
      return db.raw(`to_char(date_trunc('month', usage_date), 'YYYY-MM-DD')`);
    default:
      return db.raw('?::text', [q.startDate]);
  }
}

/**
 * One page of groups in key order (period, then the grouped values), after
 * q.after; one extra group tells whether more follow. Each group's key values
 * are text columns k0 (the period), k1... in the order of groupKeyOf.
 */
export async function queryUsageGroups(db: Db, q: UsageQuery, rollup: UsageRollup): Promise<Array<UsageGroupKey & { sums: RollupSums }>> {
  const keys: Knex.Raw[] = [periodOf(db, q), ...q.groupBy.map((f) => db.raw('??', [COLUMN_OF[f]])), ...q.groupByTags.map((t) => db.raw(`coalesce(dims ->> ?, '')`, [t]))];
  const names = keys.map((_, n) => `k${n}`);
  const grouped = matching(db, q, rollup)
    .select([
      ...keys.map((k, n) => {
        const { sql, bindings } = k.toSQL();
        return db.raw(`${sql} AS ${names[n]}`, bindings as readonly Knex.Value[]);
      }),
      ...SUM_COLUMNS.map((c) => db.raw('sum(??)::text AS ??', [c, c])),
    ])
    .groupByRaw(names.map((_, n) => String(n + 1)).join(', '));
  const page = db.select('*').from(grouped.as('g'));
  if (q.after) page.whereRaw(`(${names.join(', ')}) > (${names.map(() => '?').join(', ')})`, q.after);
  const rows: Array<Record<string, string>> = await page.orderBy(names).limit(q.pageSize + 1);
  return rows.map((r) => {
    const group: UsageGroupKey & { sums: RollupSums } = { period: r.k0, tags: {}, sums: fromSums(r) };
    q.groupBy.forEach((f, n) => {
      const value = r[`k${n + 1}`];
      if (f === 'user') group.userId = value;
      else if (f === 'provider') group.provider = value;
      else if (f === 'model') group.model = value;
      else if (f === 'charge_type') group.chargeType = value as ChargeType;
      else group.apiKeyId = value;
    });
    q.groupByTags.forEach((t, n) => (group.tags[t] = r[`k${1 + q.groupBy.length + n}`]));
    return group;
  });
}

/** The sums over every row the query matches (all pages). */
export async function sumUsageGroups(db: Db, q: UsageQuery, rollup: UsageRollup): Promise<RollupSums> {
  const row = await matching(db, q, rollup).select(SUM_COLUMNS.map((c) => db.raw('sum(??)::text AS ??', [c, c]))).first();
  return fromSums(row as Record<string, string | null>);
}
