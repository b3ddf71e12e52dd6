import {
  ChargeType as PbChargeType,
  DeletePriceRequest,
  DeletePriceResponse,
  EstimateCostRequest,
  EstimateCostResponse,
  GetPriceRequest,
  GetPriceResponse,
  ListModelsRequest,
  ListModelsResponse,
  ListPricingChangesRequest,
  ListPricingChangesResponse,
  ModelPrice,
  PricingChange as PbPricingChange,
  PricingChangeKind,
  PricingStatus,
  RerateChargesRequest,
  RerateChargesResponse,
  SetPriceRequest,
  SetPriceResponse,
} from '@metering/contracts';
import { CURRENCY_CODE, formatDecimal, PriceVersion } from '@metering/pricing';
import { Estimate, PricingService } from '../services/pricing.service';
import { RerateService } from '../services/rerate.service';
import { PricingChange, PricingChangeKind as ChangeKind } from '../store/pricing-changes.repo';
import { toProtoChargeType, toProtoMoney, toProtoPriceOrigin, toProtoTimestamp } from './convert';

/** ListModels, GetPrice, EstimateCost, SetPrice, DeletePrice, ListPricingChanges, RerateCharges: wire -> service -> wire. */

const or = (s: string | undefined) => s ?? '';

export function toProtoModelPrice(p: PriceVersion): ModelPrice {
  const s = p.spec;
  const lc = s.longContext;
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
    rates: {
      inputPerMillion: s.input,
      outputPerMillion: s.output,
      cachedInputPerMillion: or(s.cachedInput),
      cacheWritePerMillion: or(s.cacheWrite),
      cacheWrite1hPerMillion: or(s.cacheWrite1h),
      reasoningPerMillion: or(s.reasoning),
      perCall: or(s.perCall),
      longContext: lc && {
        thresholdPromptTokens: String(lc.thresholdPromptTokens),
        inputPerMillion: lc.input,
        outputPerMillion: lc.output,
        cachedInputPerMillion: or(lc.cachedInput),
        cacheWritePerMillion: or(lc.cacheWrite),
        cacheWrite1hPerMillion: or(lc.cacheWrite1h),
      },
    },
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
