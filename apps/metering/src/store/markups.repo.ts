import { Dec } from '@metering/pricing';
import type { ChargeType, Markup, MarkupKey } from '@metering/domain';
import type { Db, Tx } from './db';

/** SQL of the markups table (the seeds' LLMPrices). No business rules. */

interface MarkupRow {
  provider: string;
  model: string;
  charge_type: ChargeType;
  factor: string;
  updated_at: Date;
}

const fromRow = (r: MarkupRow): Markup => ({
  chargeType: r.charge_type,
  provider: r.provider,
  model: r.model,
  factor: new Dec(r.factor),
  updateTime: r.updated_at,
});

const keyOf = (k: MarkupKey) => ({ provider: k.provider, model: k.model, charge_type: k.chargeType });

export async function findMarkup(db: Db | Tx, key: MarkupKey): Promise<Markup | undefined> {
  const row: MarkupRow | undefined = await db('markups').where(keyOf(key)).first();
  return row ? fromRow(row) : undefined;
}

export async function upsertMarkup(tx: Tx, m: Markup): Promise<Markup> {
  const rows: MarkupRow[] = await tx('markups')
    .insert({ ...keyOf(m), factor: m.factor.toFixed() })
    .onConflict(['provider', 'model', 'charge_type'])
    .merge({ factor: m.factor.toFixed(), updated_at: tx.fn.now() })
    .returning('*');
  return fromRow(rows[0]);
}

export async function listMarkups(db: Db, provider?: string): Promise<Markup[]> {
  const q = db('markups').select('*').orderBy(['provider', 'model', 'charge_type']);
  if (provider) q.where({ provider });
  return (await q).map(fromRow);
}

export async function deleteMarkup(tx: Tx, key: MarkupKey): Promise<boolean> {
  // RETURNING rather than the affected-row count, which the embedded driver does not report.
  const rows: unknown[] = await tx('markups').where(keyOf(key)).delete().returning('provider');
  return rows.length > 0;
}
