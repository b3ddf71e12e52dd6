import {
  ChangeListQuery,
  ChargeInput,
  ChargeRecord,
  ChargeType,
  costsOf,
  CostEstimateQuery,
  encodeChangePageToken,
  NotFoundError,
  OperatorPrice,
  PriceQuery,
  validateDeletePrice,
  validateEstimateCost,
  validateGetPrice,
  validateListModels,
  validateListPricingChanges,
  validateSetPrice,
  EstimateCostInput,
  SetPriceInput,
} from '@metering/domain';
import {
  choosePrice,
  computeCost,
  Cost,
  Dec,
  formatDecimal,
  inEffect,
  parseRates,
  PriceTable,
  PriceVersion,
  TokenCounts,
} from '@metering/pricing';
import { Db, inTransaction, read, Tx } from '../store/db';
import { findEffectiveMarkup } from '../store/markups.repo';
import { deleteOperatorPrice, findOperatorPrice, listOperatorPrices, lockOperatorPrice, upsertOperatorPrice } from '../store/prices.repo';
import { insertPricingChange, listPricingChanges, PricingChange } from '../store/pricing-changes.repo';

/** The pricing fields of a charge. */
export type ChargePricing = Pick<ChargeRecord, 'pricingStatus' | 'priceVersion' | 'markup' | 'priceOrigin' | 'costs' | 'rateTime'>;

/** What a token mix costs for an account, or why it has no price. */
export interface Estimate {
  price?: PriceVersion;
  markup: Dec;
  cost?: Cost;
}

/** An operator price as a price version: the version string says where it comes from. */
export function operatorVersion(p: OperatorPrice): PriceVersion {
  const at = p.effectiveTime.toISOString();
  const version = p.accountId ? `account:${p.accountId}:${p.provider}/${p.model}@${at}` : `operator:${p.provider}/${p.model}@${at}`;
  return {
    version,
    provider: p.provider,
    model: p.model,
    origin: p.accountId ? 'account' : 'operator',
    accountId: p.accountId,
    effectiveTime: p.effectiveTime,
    source: p.source,
    spec: p.spec,
    ...parseRates(p.spec, version),
  };
}

/**
 * Prices: the built-in catalogue merged with operator prices (account >
 * operator > catalogue, see choosePrice), markups (the account's own, else the
 * default, else 1), cost estimates, operator price management with its audit
 * trail. RecordCharge, re-rating and budget estimates all price through
 * `estimate` / `priceCharge`, so a charge is always priced one way.
 */
export class PricingService {
  constructor(
    private readonly db: Db,
    private readonly catalog: PriceTable = new PriceTable(),
    private readonly clock: () => Date = () => new Date(),
  ) {}

  /** The price in effect for an account's model at a moment, by precedence. */
  async priceAt(db: Db | Tx, accountId: string, provider: string, model: string, at: Date): Promise<PriceVersion | undefined> {
    const operator = await findOperatorPrice(db, accountId, provider, model, at);
    const version = operator && operatorVersion(operator);
    return choosePrice({
      account: version?.origin === 'account' ? version : undefined,
      operator: version?.origin === 'operator' ? version : undefined,
      catalog: this.catalog.priceAt(provider, model, at),
    });
  }

  /** The cost of a token mix for an account at a moment (no cost when the model has no price then). */
  async estimate(
    db: Db | Tx,
    q: { accountId: string; provider: string; model: string; chargeType: ChargeType; tokens: TokenCounts; callCount: number; at: Date },
  ): Promise<Estimate> {
    const price = await this.priceAt(db, q.accountId, q.provider, q.model, q.at);
    if (!price) return { markup: new Dec(1) };
    const markup = (await findEffectiveMarkup(db, q))?.factor ?? new Dec(1);
    return { price, markup, cost: computeCost(price, q.tokens, markup, q.callCount) };
  }

  /** The pricing of a charge at its usage time, now. A model without a price is unpriced, with no cost invented. */
  async priceCharge(db: Db | Tx, c: ChargeInput): Promise<ChargePricing> {
    const { price, markup, cost } = await this.estimate(db, { ...c, at: c.usageTime });
    const rateTime = this.clock();
    if (!price || !cost) return { pricingStatus: 'unpriced', priceVersion: null, markup: null, priceOrigin: null, costs: null, rateTime };
    return { pricingStatus: 'priced', priceVersion: price.version, markup: formatDecimal(markup), priceOrigin: price.origin, costs: costsOf(cost), rateTime };
  }

  // ---- RPCs ----

  async estimateCost(raw: EstimateCostInput): Promise<Estimate> {
    const q: CostEstimateQuery = validateEstimateCost(raw, this.clock());
    return read(() => this.estimate(this.db, q));
  }

  async getPrice(raw: Parameters<typeof validateGetPrice>[0]): Promise<PriceVersion> {
    const q: PriceQuery = validateGetPrice(raw, this.clock());
    const price = await read(() => this.priceAt(this.db, q.accountId, q.provider, q.model, q.at));
    if (!price) throw new NotFoundError('PRICE_NOT_FOUND', `no price for ${q.provider}/${q.model} at ${q.at.toISOString()}`);
    return price;
  }

  /**
   * The price of every model in effect at `at`, by precedence (one per model),
   * or every version of the catalogue and of the operator prices with
   * includeHistory; ordered by provider, model, effective time.
   */
  async listModels(raw: Parameters<typeof validateListModels>[0]): Promise<PriceVersion[]> {
    const q = validateListModels(raw, this.clock());
    const operator = (await read(() => listOperatorPrices(this.db, q))).map(operatorVersion);
    const catalog = this.catalog.versions().filter((v) => !q.provider || v.provider === q.provider);
    const byModel = new Map<string, PriceVersion[]>();
    for (const v of [...catalog, ...operator]) {
      const key = `${v.provider}\u0000${v.model}`;
      byModel.set(key, [...(byModel.get(key) ?? []), v]);
    }
    const keys = [...byModel.keys()].sort();
    const byTime = (a: PriceVersion, b: PriceVersion) => a.effectiveTime.getTime() - b.effectiveTime.getTime();
    if (q.includeHistory) return keys.flatMap((k) => (byModel.get(k) ?? []).sort(byTime));
    return keys.flatMap((k) => {
      const versions = (byModel.get(k) ?? []).sort(byTime);
      const layer = (origin: PriceVersion['origin']) => inEffect(versions.filter((v) => v.origin === origin), q.at);
      return choosePrice({ account: layer('account'), operator: layer('operator'), catalog: layer('catalog') }) ?? [];
    });
  }

  async setPrice(raw: SetPriceInput): Promise<PriceVersion> {
    const price = validateSetPrice(raw, this.clock());
    return inTransaction(this.db, async (tx) => {
      const before = await lockOperatorPrice(tx, price);
      const stored = await upsertOperatorPrice(tx, price);
      await insertPricingChange(tx, {
        kind: 'price_set', accountId: price.accountId, provider: price.provider, model: price.model, chargeType: null,
        before: before ? priceAudit(before) : null, after: priceAudit(stored), actor: price.updatedBy,
      });
      return operatorVersion(stored);
    });
  }

  async deletePrice(raw: Parameters<typeof validateDeletePrice>[0]): Promise<boolean> {
    const { key, actor } = validateDeletePrice(raw);
    return inTransaction(this.db, async (tx) => {
      const removed = await deleteOperatorPrice(tx, key);
      if (removed) {
        await insertPricingChange(tx, {
          kind: 'price_deleted', accountId: key.accountId, provider: key.provider, model: key.model, chargeType: null,
          before: priceAudit(removed), after: null, actor,
        });
      }
      return removed !== undefined;
    });
  }

  async listPricingChanges(raw: Parameters<typeof validateListPricingChanges>[0]): Promise<{ changes: PricingChange[]; nextPageToken: string }> {
    const q: ChangeListQuery = validateListPricingChanges(raw);
    const rows = await read(() => listPricingChanges(this.db, q));
    const more = rows.length > q.pageSize;
    const changes = more ? rows.slice(0, q.pageSize) : rows;
    return { changes, nextPageToken: more ? encodeChangePageToken(q, changes[changes.length - 1].changeId) : '' };
  }
}

/** An operator price as recorded in the audit trail. */
function priceAudit(p: OperatorPrice) {
  return { effective_time: p.effectiveTime.toISOString(), rates: { ...p.spec }, source: p.source };
}
