import {
  BilledCounts,
  ChangeListQuery,
  ChargeInput,
  ChargeRecord,
  ChargeType,
  costsOf,
  MarkupKey,
  CostEstimateQuery,
  encodeChangePageToken,
  NotFoundError,
  OperatorPrice,
  PriceQuery,
  validateDeletePrice,
  validateEstimateCost,
  validateGetPrice,
  validateListModels,
  encodeModelPageToken,
  ModelListInput,
  validateListPricingChanges,
  validateSetPrice,
  EstimateCostInput,
  SetPriceInput,
} from '@metering/domain';
import {
  BilledUsage,
  catalogInEffect,
  choosePrice,
  computeCost,
  Cost,
  Dec,
  formatDecimal,
  inEffect,
  parseRates,
  PriceTable,
  PriceVersion,
  unpricedReason,
} from '@metering/pricing';
import { Db, inTransaction, read, Tx } from '../store/db';
import { deleteOperatorPrice, listOperatorPrices, lockOperatorPrice, upsertOperatorPrice } from '../store/prices.repo';
import { insertPricingChange, listPricingChanges, PricingChange } from '../store/pricing-changes.repo';
import { DIRECT_LOOKUPS, PriceLookups } from './settings-cache';

/** The pricing fields of a charge. */
export type ChargePricing = Pick<ChargeRecord, 'pricingStatus' | 'priceVersion' | 'markup' | 'priceOrigin' | 'costs' | 'rateTime'>;

/** What a token mix costs for an account, or why it has no price. */
export interface Estimate {
  price?: PriceVersion;
  markup: Dec;
  cost?: Cost;
  /** Why a model with a price cannot price this usage (a service tier or tool it has no price for). */
  unpriced?: string;
}

/** An account's model at a moment. */
export interface PriceItem {
  accountId: string;
  provider: string;
  model: string;
  at: Date;
}

/** A token mix (with its tool calls and service tier) to price for an account. */
export interface EstimateItem extends PriceItem, BilledCounts {
  chargeType: ChargeType;
  callCount: number;
}

/** The distinct values of a list (by their JSON). */
function uniqueBy<T>(items: T[]): T[] {
  return [...new Map(items.map((i) => [JSON.stringify(i), i])).values()];
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
 * trail. RecordCharge(s), re-rating and EstimateCost all price through
 * `estimates` / `priceCharges` (two reads for a whole batch), so a charge is
 * always priced one way.
 */
export class PricingService {
  constructor(
    private readonly db: Db,
    private readonly catalog: PriceTable = new PriceTable(),
    private readonly clock: () => Date = () => new Date(),
  ) {}

  /**
   * The price in effect for each item (an account's model at a moment), by
   * precedence: one read of the operator prices for the whole list.
   */
  async pricesAt(db: Db | Tx, items: PriceItem[], lookups: PriceLookups = DIRECT_LOOKUPS): Promise<Array<PriceVersion | undefined>> {
    const models = uniqueBy(items.map((i): [string, string] => [i.provider, i.model]));
    const operator = (await lookups.operatorPrices(db, items.map((i) => i.accountId), models)).map(operatorVersion);
    return items.map((i) => {
      const mine = operator.filter((v) => v.provider === i.provider && v.model === i.model);
      return choosePrice({
        account: i.accountId ? inEffect(mine.filter((v) => v.accountId === i.accountId), i.at) : undefined,
        operator: inEffect(mine.filter((v) => v.accountId === ''), i.at),
        catalog: this.catalog.priceAt(i.provider, i.model, i.at),
      });
    });
  }

  /** The markup of each item: the account's own, else the default, else 1. One read for the whole list. */
  async markupsOf(db: Db | Tx, items: Array<Omit<MarkupKey, 'accountId'> & { accountId: string }>, lookups: PriceLookups = DIRECT_LOOKUPS): Promise<Dec[]> {
    const found = await lookups.markups(db, uniqueBy(items.map((i) => ({ accountId: i.accountId, provider: i.provider, model: i.model, chargeType: i.chargeType }))));
    const factor = (i: (typeof items)[number], accountId: string) =>
      found.find((m) => m.accountId === accountId && m.provider === i.provider && m.model === i.model && m.chargeType === i.chargeType)?.factor;
    return items.map((i) => (i.accountId && factor(i, i.accountId)) || factor(i, '') || new Dec(1));
  }

  /** The price in effect for an account's model at a moment, by precedence. */
  async priceAt(db: Db | Tx, item: PriceItem): Promise<PriceVersion | undefined> {
    return (await this.pricesAt(db, [item]))[0];
  }

  /**
   * The costs of token mixes for accounts at moments (no cost when a model has no price then): two
   * reads for the whole list, or none when `lookups` (the hot paths' settings cache) has them.
   */
  async estimates(db: Db | Tx, items: EstimateItem[], lookups: PriceLookups = DIRECT_LOOKUPS): Promise<Estimate[]> {
    const [prices, markups] = await Promise.all([this.pricesAt(db, items, lookups), this.markupsOf(db, items, lookups)]);
    return items.map((q, n) => {
      const price = prices[n];
      const markup = markups[n];
      // A completion pays the model's per-request fee; the time of day picks peak or off-peak rates.
      const usage: BilledUsage = { callCount: q.callCount, requests: q.chargeType === 'completion' ? 1 : 0, toolCalls: q.toolCalls, serviceTier: q.serviceTier, at: q.at };
      // Fail closed: a tier or tool the price does not cover leaves the charge unpriced.
      if (!price) return { markup };
      const unpriced = unpricedReason(price, usage);
      return unpriced ? { markup, unpriced } : { price, markup, cost: computeCost(price, q.tokens, markup, usage) };
    });
  }

  /** The pricing of charges at their usage times, now. A model without a price is unpriced, with no cost invented. */
  async priceCharges(db: Db | Tx, charges: ChargeInput[], lookups: PriceLookups = DIRECT_LOOKUPS): Promise<ChargePricing[]> {
    const estimates = await this.estimates(db, charges.map((c) => ({ ...c, at: c.usageTime })), lookups);
    const rateTime = this.clock();
    return estimates.map(({ price, markup, cost }): ChargePricing => {
      if (!price || !cost) return { pricingStatus: 'unpriced', priceVersion: null, markup: null, priceOrigin: null, costs: null, rateTime };
      return { pricingStatus: 'priced', priceVersion: price.version, markup: formatDecimal(markup), priceOrigin: price.origin, costs: costsOf(cost), rateTime };
    });
  }

  // ---- RPCs ----

  async estimateCost(raw: EstimateCostInput): Promise<Estimate> {
    const q: CostEstimateQuery = validateEstimateCost(raw, this.clock());
    return (await read(() => this.estimates(this.db, [q])))[0];
  }

  async getPrice(raw: Parameters<typeof validateGetPrice>[0]): Promise<PriceVersion> {
    const q: PriceQuery = validateGetPrice(raw, this.clock());
    const price = await read(() => this.priceAt(this.db, q));
    if (!price) throw new NotFoundError('PRICE_NOT_FOUND', `no price for ${q.provider}/${q.model} at ${q.at.toISOString()}`);
    return price;
  }

  /**
   * The price of every model in effect at `at`, by precedence (one per model),
   * or every version of the catalogue and of the operator prices with
   * includeHistory; ordered by provider, model, effective time; filtered by
   * provider (an alias names its provider) and by a text in the model id or
   * its aliases; paged when page_size is set.
   */
  async listModels(raw: ModelListInput): Promise<{ prices: PriceVersion[]; nextPageToken: string }> {
    const q = validateListModels(raw, this.clock());
    const provider = q.provider && this.catalog.providerId(q.provider);
    const operator = (await read(() => listOperatorPrices(this.db, q))).map(operatorVersion);
    const catalog = this.catalog.versions().filter((v) => !provider || v.provider === provider);
    const byModel = new Map<string, PriceVersion[]>();
    for (const v of [...catalog, ...operator]) {
      const key = `${v.provider}\u0000${v.model}`;
      byModel.set(key, [...(byModel.get(key) ?? []), v]);
    }
    const byTime = (a: PriceVersion, b: PriceVersion) => a.effectiveTime.getTime() - b.effectiveTime.getTime();
    let list = [...byModel.values()].flatMap((all): PriceVersion[] => {
      const versions = all.sort(byTime);
      if (q.includeHistory) return versions;
      const layer = (origin: PriceVersion['origin']) => inEffect(versions.filter((v) => v.origin === origin), q.at);
      const chosen = choosePrice({ account: layer('account'), operator: layer('operator'), catalog: catalogInEffect(versions.filter((v) => v.origin === 'catalog'), q.at) });
      return chosen ? [chosen] : [];
    });
    const name = q.name;
    if (name) list = list.filter((v) => v.model.toLowerCase().includes(name) || (v.aliases ?? []).some((a) => a.includes(name)));
    const keyed = list.map((v) => ({ v, key: modelListKey(v) })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const after = q.after;
    const rest = after === undefined ? keyed : keyed.filter((k) => k.key > after);
    if (!q.pageSize || rest.length <= q.pageSize) return { prices: rest.map((k) => k.v), nextPageToken: '' };
    const page = rest.slice(0, q.pageSize);
    return { prices: page.map((k) => k.v), nextPageToken: encodeModelPageToken(raw, q, page[page.length - 1].key) };
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

/** Versions at the same moment list in precedence order, lowest first: catalogue, operator, account. */
const ORIGIN_RANK: Record<PriceVersion['origin'], string> = { catalog: '0', operator: '1', account: '2' };

/** The order of ListModels, and its page cursor: provider, model, effective time, then origin and account. */
function modelListKey(v: PriceVersion): string {
  return [v.provider, v.model, v.effectiveTime.toISOString(), ORIGIN_RANK[v.origin], v.accountId].join('\u0000');
}

/** An operator price as recorded in the audit trail. */
function priceAudit(p: OperatorPrice) {
  return { effective_time: p.effectiveTime.toISOString(), rates: { ...p.spec }, source: p.source };
}
