import type { ChangeListQuery, ChargeType, JsonObject } from '@metering/domain';
import type { Db, Tx } from './db';

/** SQL of the audit trail of markup and price changes. No business rules. */

export type PricingChangeKind = 'markup_set' | 'markup_deleted' | 'price_set' | 'price_deleted';

export interface PricingChange {
  changeId: bigint;
  kind: PricingChangeKind;
  accountId: string;
  provider: string;
  model: string;
  chargeType: ChargeType | null;
  before: JsonObject | null;
  after: JsonObject | null;
  actor: string;
  changeTime: Date;
}

interface ChangeRow {
  account_id: string;
  change_id: string;
  kind: PricingChangeKind;
  provider: string;
  model: string;
  charge_type: ChargeType | null;
  before: JsonObject | null;
  after: JsonObject | null;
  actor: string;
  change_time: Date;
}

/** Records one change, in the transaction that makes it. */
export async function insertPricingChange(tx: Tx, c: Omit<PricingChange, 'changeId' | 'changeTime'>): Promise<void> {
  await tx('pricing_changes').insert({
    account_id: c.accountId,
    kind: c.kind,
    provider: c.provider,
    model: c.model,
    charge_type: c.chargeType,
    before: c.before === null ? null : JSON.stringify(c.before),
    after: c.after === null ? null : JSON.stringify(c.after),
    actor: c.actor,
  });
}

/** One page of changes of the defaults ('') or of one account, newest first; one extra row tells whether more follow. */
export async function listPricingChanges(db: Db, q: ChangeListQuery): Promise<PricingChange[]> {
  const query = db('pricing_changes').where('account_id', q.accountId);
  if (q.beforeId !== undefined) query.where('change_id', '<', q.beforeId.toString());
  const rows: ChangeRow[] = await query.orderBy('change_id', 'desc').limit(q.pageSize + 1);
  return rows.map((r) => ({
    changeId: BigInt(r.change_id),
    kind: r.kind,
    accountId: r.account_id,
    provider: r.provider,
    model: r.model,
    chargeType: r.charge_type,
    before: r.before,
    after: r.after,
    actor: r.actor,
    changeTime: r.change_time,
  }));
}
