import type { ChargeCursor, ChargeFilters, ChargeLookup, ChargeRecord } from '@metering/domain';
import { fromChargeRow, type ChargeRow } from './charges.repo';
import type { Db } from './db';

/** SQL that reads stored charges (GetCharge, ListCharges, ExportCharges). No business rules. */

/** One charge by its id (the primary key) or its idempotency key (the unique key). */
export async function findCharge(db: Db, lookup: ChargeLookup): Promise<ChargeRecord | undefined> {
  const where = lookup.chargeId !== undefined ? { account_id: lookup.accountId, charge_id: lookup.chargeId } : { account_id: lookup.accountId, idempotency_key: lookup.idempotencyKey };
  const row: ChargeRow | undefined = await db('charges').where(where).first();
  return row ? fromChargeRow(row) : undefined;
}

/**
 * Up to `limit` charges matching the filters, in (usage_date, charge_id) order after `after`:
 * a range scan of the index charges_by_day_id, so each page or export batch costs its own rows
 * only, however deep into the range it is.
 */
export async function listCharges(db: Db, f: ChargeFilters, after: ChargeCursor | undefined, limit: number): Promise<ChargeRecord[]> {
  const query = db('charges').where('account_id', f.accountId).whereBetween('usage_date', [f.startDate, f.endDate]);
  if (f.userId) query.where('user_id', f.userId);
  if (f.provider) query.where('provider', f.provider);
  if (f.model) query.where('model', f.model);
  if (f.chargeType) query.where('charge_type', f.chargeType);
  if (f.pricingStatus) query.where('pricing_status', f.pricingStatus);
  if (after) query.whereRaw('(usage_date, charge_id) > (?, ?)', [after.usageDate, after.chargeId]);
  const rows: ChargeRow[] = await query.orderBy(['usage_date', 'charge_id']).limit(limit);
  return rows.map(fromChargeRow);
}
