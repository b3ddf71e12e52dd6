import {
  ChargeType as PbChargeType,
  DeletePriceRequest,
  DeletePriceResponse,
  EstimateCostRequest,
  EstimateCostResponse,
  GetPriceRequest,
  GetPriceResponse,
  ListModelsRequest,
  LongContextRates,
  ListModelsResponse,
  ListPricingChangesRequest,
  ListPricingChangesResponse,
  ModelPrice,
  PricingChange as PbPricingChange,
  PricingChangeKind,
  PriceRates as PbPriceRates,
  PricingStatus,
  RerateChargesRequest,
  RerateChargesResponse,
  SetPriceRequest,
  SetPriceResponse,
  TimeOfDayRates,
} from '@metering/contracts';
import { wireName } from '@metering/domain';
import { CURRENCY_CODE, formatDecimal, PriceRates, PriceVersion, RATE_FIELD, TOKEN_RATE_KEYS, TokenRates } from '@metering/pricing';
import { Estimate, PricingService } from '../services/pricing.service';
import { RerateService } from '../services/rerate.service';
import { PricingChange, PricingChangeKind as ChangeKind } from '../store/pricing-changes.repo';
import { toProtoChargeType, toProtoMoney, toProtoPriceOrigin, toProtoTimestamp } from './convert';

/** ListModels, GetPrice, EstimateCost, SetPrice, DeletePrice, ListPricingChanges, RerateCharges: wire -> service -> wire. */

const or = (s: string | undefined) => s ?? '';

/** Token rates to the wire's camelCase fields ('' when not set); long-context tiers and windows have no reasoning rate of their own. */
function toProtoTokenRates<T>(r: TokenRates, withReasoning: boolean): T {
  return Object.fromEntries(TOKEN_RATE_KEYS.filter((k) => withReasoning || k !== 'reasoning').map((k) => [wireName(RATE_FIELD[k]), or(r[k])])) as T;
}

export function toProtoRates(s: PriceRates): PbPriceRates {
  const lc = s.longContext;
  type Tokens<T, Other extends keyof T> = Omit<T, Other>;
  return {
    ...toProtoTokenRates<Tokens<PbPriceRates, 'perCall' | 'perRequest' | 'toolCalls' | 'longContext' | 'timeOfDay' | 'serviceTiers'>>(s, true),
    perCall: or(s.perCall),
    perRequest: or(s.perRequest),
    toolCalls: { ...s.toolCalls },
    longContext: lc && { ...toProtoTokenRates<Tokens<LongContextRates, 'thresholdPromptTokens'>>(lc, false), thresholdPromptTokens: String(lc.thresholdPromptTokens) },
    timeOfDay: (s.timeOfDay ?? []).map((w) => ({ ...toProtoTokenRates<Tokens<TimeOfDayRates, 'startTime' | 'endTime'>>(w, false), startTime: w.startTime, endTime: w.endTime })),
    serviceTiers: s.serviceTiers && { batch: or(s.serviceTiers.batch), flex: or(s.serviceTiers.flex), priority: or(s.serviceTiers.priority) },
  };
}

export function toProtoModelPrice(p: PriceVersion): ModelPrice {
  return {
    provider: p.provider,
    model: p.model,
    origin: toProtoPriceOrigin(p.origin),
    accountId: p.accountId,
    version: p.version,
    effectiveTime: toProtoTimestamp(p.effectiveTime),
    source: p.source,
    currencyCode: CURRENCY_CODE,
    aliases: [...(p.aliases ?? [])],
    retireTime: p.retiredTime && toProtoTimestamp(p.retiredTime),
    rates: toProtoRates(p.spec),
  };
}

function toProtoEstimate(e: Estimate): EstimateCostResponse {
  const c = e.cost;
  return {
    pricingStatus: e.price ? PricingStatus.PRICING_STATUS_PRICED : PricingStatus.PRICING_STATUS_UNPRICED,
    priceVersion: e.price?.version ?? '',
    markup: e.price ? formatDecimal(e.markup) : '',
    priceOrigin: toProtoPriceOrigin(e.price?.origin ?? null),
    providerCost: c && toProtoMoney(c.providerCost),
    promptCost: c && toProtoMoney(c.promptCost),
    completionCost: c && toProtoMoney(c.completionCost),
    callCost: c && toProtoMoney(c.callCost),
    totalCost: c && toProtoMoney(c.totalCost),
  };
}

const KIND: Record<ChangeKind, PricingChangeKind> = {
  markup_set: PricingChangeKind.PRICING_CHANGE_KIND_MARKUP_SET,
  markup_deleted: PricingChangeKind.PRICING_CHANGE_KIND_MARKUP_DELETED,
  price_set: PricingChangeKind.PRICING_CHANGE_KIND_PRICE_SET,
  price_deleted: PricingChangeKind.PRICING_CHANGE_KIND_PRICE_DELETED,
};

const toProtoChange = (c: PricingChange): PbPricingChange => ({
  changeId: c.changeId.toString(),
  kind: KIND[c.kind],
  accountId: c.accountId,
  provider: c.provider,
  model: c.model,
  chargeType: c.chargeType ? toProtoChargeType(c.chargeType) : PbChargeType.CHARGE_TYPE_UNSPECIFIED,
  before: c.before ?? undefined,
  after: c.after ?? undefined,
  actor: c.actor,
  changeTime: toProtoTimestamp(c.changeTime),
});

export const listModelsHandler =
  (service: PricingService) =>
  async (req: ListModelsRequest): Promise<ListModelsResponse> => {
    const { prices, nextPageToken } = await service.listModels(req);
    return { prices: prices.map(toProtoModelPrice), nextPageToken };
  };

export const getPriceHandler =
  (service: PricingService) =>
  async (req: GetPriceRequest): Promise<GetPriceResponse> => ({ price: toProtoModelPrice(await service.getPrice(req)) });

export const estimateCostHandler =
  (service: PricingService) =>
  async (req: EstimateCostRequest): Promise<EstimateCostResponse> => toProtoEstimate(await service.estimateCost(req));

export const setPriceHandler =
  (service: PricingService) =>
  async (req: SetPriceRequest): Promise<SetPriceResponse> => ({ price: toProtoModelPrice(await service.setPrice(req)) });

export const deletePriceHandler =
  (service: PricingService) =>
  async (req: DeletePriceRequest): Promise<DeletePriceResponse> => ({ deleted: await service.deletePrice(req) });

export const listPricingChangesHandler =
  (service: PricingService) =>
  async (req: ListPricingChangesRequest): Promise<ListPricingChangesResponse> => {
    const { changes, nextPageToken } = await service.listPricingChanges(req);
    return { changes: changes.map(toProtoChange), nextPageToken };
  };

export const rerateChargesHandler =
  (service: RerateService) =>
  async (req: RerateChargesRequest): Promise<RerateChargesResponse> => {
    const r = await service.rerate(req);
    return {
      chargesExamined: String(r.examined),
      chargesChanged: String(r.changed),
      chargesNewlyPriced: String(r.newlyPriced),
      chargesStillUnpriced: String(r.stillUnpriced),
      totalCostBefore: toProtoMoney(r.totalCostBefore),
      totalCostAfter: toProtoMoney(r.totalCostAfter),
      dryRun: r.dryRun,
    };
  };
