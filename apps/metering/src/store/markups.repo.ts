import { Dec } from '@metering/pricing';
import type { ChargeType, Markup, MarkupKey } from '@metering/domain';
import type { Db, Tx } from './db';
import { bumpSettingsEpoch } from './settings-epoch.repo';

/** SQL of the markups table (the Django models' LLMPrices; account_id '' = the default of every account). No business rules. */

interface MarkupRow {
  account_id: string;
  provider: string;
  model: string;
  charge_type: ChargeType;
  factor: string;
  updated_at: Date;
  updated_by: string;
}

const fromRow = (r: MarkupRow): Markup => ({
  accountId: r.account_id,
  chargeType: r.charge_type,
  provider: r.provider,
  model: r.model,
  factor: new Dec(r.factor),
  updateTime: r.updated_at,
  updatedBy: r.updated_by,
});

const keyOf = (k: MarkupKey) => ({ account_id: k.accountId, provider: k.provider, model: k.model, charge_type: k.chargeType });

/** The markups that can apply to the given keys (the accounts' own and the defaults, account_id ''): one read for a batch. */
export async function findMarkups(db: Db | Tx, keys: MarkupKey[]): Promise<Markup[]> {
  if (keys.length === 0) return [];
  const { rows } = await db.raw(
    `SELECT m.* FROM markups m JOIN unnest(?::text[], ?::text[], ?::text[]) AS k(provider, model, charge_type) USING (provider, model, charge_type)
      WHERE m.account_id = ANY(?::text[])`,
    [keys.map((k) => k.provider), keys.map((k) => k.model), keys.map((k) => k.chargeType), ['', ...new Set(keys.map((k) => k.accountId).filter((a) => a !== ''))]],
  );
  return (rows as MarkupRow[]).map(fromRow);
}

/** The markup row of exactly this key, locked for update (for the audit trail's "before"). */
export async function lockMarkup(tx: Tx, key: MarkupKey): Promise<Markup | undefined> {
  const row: MarkupRow | undefined = await tx('markups').where(keyOf(key)).forUpdate().first();
  return row ? fromRow(row) : undefined;
}

export async function upsertMarkup(tx: Tx, m: Markup): Promise<Markup> {
  // The time is a parameter: Citus refuses a non-immutable function (now()) in DO UPDATE SET.
  const now = new Date();
  const rows: MarkupRow[] = await tx('markups')
    .insert({ ...keyOf(m), factor: m.factor.toFixed(), updated_by: m.updatedBy, updated_at: now })
    .onConflict(['account_id', 'provider', 'model', 'charge_type'])
    .merge({ factor: m.factor.toFixed(), updated_by: m.updatedBy, updated_at: now })
    .returning('*');
  await bumpSettingsEpoch(tx);
  return fromRow(rows[0]);
}

export async function listMarkups(db: Db, filter: { accountId: string; provider?: string }): Promise<Markup[]> {
  const q = db('markups').select('*').where('account_id', filter.accountId).orderBy(['provider', 'model', 'charge_type']);
  if (filter.provider) q.where({ provider: filter.provider });
  return (await q).map(fromRow);
}

export async function deleteMarkup(tx: Tx, key: MarkupKey): Promise<Markup | undefined> {
  // RETURNING rather than the affected-row count, which the embedded driver does not report.
  const rows: MarkupRow[] = await tx('markups').where(keyOf(key)).delete().returning('*');
  if (rows.length > 0) await bumpSettingsEpoch(tx);
  return rows.length > 0 ? fromRow(rows[0]) : undefined;
}
