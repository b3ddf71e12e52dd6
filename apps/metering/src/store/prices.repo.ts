import type { OperatorPrice, PriceKey } from '@metering/domain';
import type { PriceRates } from '@metering/pricing';
import type { Db, Tx } from './db';
import { bumpSettingsEpoch } from './settings-epoch.repo';

/** SQL of the operator prices (account_id '' = every account). No business rules. */

interface PriceRow {
  account_id: string;
  provider: string;
  model: string;
  effective_time: Date;
  rates: PriceRates;
  source: string;
  updated_by: string;
  updated_at: Date;
}

const fromRow = (r: PriceRow): OperatorPrice => ({
  accountId: r.account_id,
  provider: r.provider,
  model: r.model,
  effectiveTime: r.effective_time,
  spec: r.rates,
  source: r.source,
  updatedBy: r.updated_by,
  updateTime: r.updated_at,
});

const keyOf = (k: PriceKey) => ({ account_id: k.accountId, provider: k.provider, model: k.model, effective_time: k.effectiveTime });

/**
 * Every operator price version of the given models that can apply to the
 * given accounts (their own and the defaults, account_id ''), oldest first:
 * one index read for a whole batch of charges. The service picks the version
 * in effect per charge, by precedence.
 */
export async function findOperatorPriceVersions(db: Db | Tx, accountIds: string[], models: Array<[string, string]>): Promise<OperatorPrice[]> {
  if (models.length === 0) return [];
  const { rows } = await db.raw(
    `SELECT p.* FROM prices p JOIN unnest(?::text[], ?::text[]) AS m(provider, model) USING (provider, model)
      WHERE p.account_id = ANY(?::text[]) ORDER BY p.effective_time`,
    [models.map((m) => m[0]), models.map((m) => m[1]), ['', ...new Set(accountIds.filter((a) => a !== ''))]],
  );
  return (rows as PriceRow[]).map(fromRow);
}

/** Every operator price version of the defaults and of one account, optionally of one provider, oldest first per model. */
export async function listOperatorPrices(db: Db, filter: { accountId: string; provider?: string }): Promise<OperatorPrice[]> {
  const q = db('prices')
    .whereIn('account_id', filter.accountId ? ['', filter.accountId] : [''])
    .orderBy(['provider', 'model', 'account_id', 'effective_time']);
  if (filter.provider) q.where('provider', filter.provider);
  return ((await q) as PriceRow[]).map(fromRow);
}

export async function lockOperatorPrice(tx: Tx, key: PriceKey): Promise<OperatorPrice | undefined> {
  const row: PriceRow | undefined = await tx('prices').where(keyOf(key)).forUpdate().first();
  return row ? fromRow(row) : undefined;
}

export async function upsertOperatorPrice(tx: Tx, p: OperatorPrice): Promise<OperatorPrice> {
  // The time is a parameter: Citus refuses a non-immutable function (now()) in DO UPDATE SET.
  const values = { rates: JSON.stringify(p.spec), source: p.source, updated_by: p.updatedBy, updated_at: new Date() };
  const rows: PriceRow[] = await tx('prices')
    .insert({ ...keyOf(p), ...values })
    .onConflict(['account_id', 'provider', 'model', 'effective_time'])
    .merge(values)
    .returning('*');
  await bumpSettingsEpoch(tx);
  return fromRow(rows[0]);
}

export async function deleteOperatorPrice(tx: Tx, key: PriceKey): Promise<OperatorPrice | undefined> {
  const rows: PriceRow[] = await tx('prices').where(keyOf(key)).delete().returning('*');
  if (rows.length > 0) await bumpSettingsEpoch(tx);
  return rows.length > 0 ? fromRow(rows[0]) : undefined;
}
