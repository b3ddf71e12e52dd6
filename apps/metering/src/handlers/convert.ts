import {
  Charge,
  ChargeType as PbChargeType,
  Money,
  PriceOrigin as PbPriceOrigin,
  PricingStatus,
  RequestType as PbRequestType,
  Reservation as PbReservation,
  ReservationStatus as PbReservationStatus,
  ServiceTier as PbServiceTier,
  Timestamp,
  TokenCounts,
  UsageSums as PbUsageSums,
} from '@metering/contracts';
import { CHARGE_TYPE_BY_NUMBER, ChargePriceOrigin, ChargeRecord, ChargeType, REQUEST_TYPE_BY_NUMBER, RequestType, Reservation, SERVICE_TIER_BY_NUMBER } from '@metering/domain';
import { CURRENCY_CODE, Dec, TokenCounts as DomainTokenCounts, formatDecimal, TOKEN_CLASSES } from '@metering/pricing';
import type { RollupSums } from '@metering/domain';

/** Domain -> wire conversions shared by the handlers (requests need none: they have the shape of the domain inputs). */

const invert = <T extends string>(byNumber: Record<number, T>) => new Map(Object.entries(byNumber).map(([n, name]) => [name, Number(n)]));
const CHARGE_TYPE_NUMBER = invert(CHARGE_TYPE_BY_NUMBER);
const REQUEST_TYPE_NUMBER = invert(REQUEST_TYPE_BY_NUMBER);
const SERVICE_TIER_NUMBER = invert(SERVICE_TIER_BY_NUMBER);

export const toProtoChargeType = (t: ChargeType): PbChargeType => CHARGE_TYPE_NUMBER.get(t) as PbChargeType;
export const toProtoRequestType = (t: RequestType): PbRequestType => REQUEST_TYPE_NUMBER.get(t) as PbRequestType;

const PRICE_ORIGIN: Record<ChargePriceOrigin, PbPriceOrigin> = {
  catalog: PbPriceOrigin.PRICE_ORIGIN_CATALOG,
  operator: PbPriceOrigin.PRICE_ORIGIN_OPERATOR,
  account: PbPriceOrigin.PRICE_ORIGIN_ACCOUNT,
  imported: PbPriceOrigin.PRICE_ORIGIN_IMPORTED,
};
export const toProtoPriceOrigin = (o: ChargePriceOrigin | null): PbPriceOrigin => (o ? PRICE_ORIGIN[o] : PbPriceOrigin.PRICE_ORIGIN_UNSPECIFIED);

export function toProtoMoney(amount: Dec | string): Money {
  return { amount: typeof amount === 'string' ? amount : formatDecimal(amount), currencyCode: CURRENCY_CODE };
}

export function toProtoTimestamp(d: Date): Timestamp {
  const ms = d.getTime();
  const seconds = Math.floor(ms / 1000);
  return { seconds: String(seconds), nanos: (ms - seconds * 1000) * 1_000_000 };
}

export function toProtoCharge(c: ChargeRecord): Charge {
  const t = c.tokens;
  return {
    chargeId: c.chargeId,
    accountId: c.accountId,
    userId: c.userId,
    idempotencyKey: c.idempotencyKey,
    sessionKey: c.sessionKey,
    provider: c.provider,
    model: c.model,
    chargeType: toProtoChargeType(c.chargeType),
    requestType: toProtoRequestType(c.requestType),
    tokens: toProtoTokens(t, c.totalTokens),
    reference: c.reference,
    endpoint: c.endpoint,
    responseTimeMs: c.responseTimeMs === null ? undefined : String(c.responseTimeMs),
    wasCached: c.wasCached,
    hadError: c.hadError,
    errorMessage: c.errorMessage,
    metadata: c.metadata,
    usageTime: toProtoTimestamp(c.usageTime),
    recordTime: toProtoTimestamp(c.recordTime),
    usageDate: c.usageDate,
    pricingStatus: c.pricingStatus === 'priced' ? PricingStatus.PRICING_STATUS_PRICED : PricingStatus.PRICING_STATUS_UNPRICED,
    priceVersion: c.priceVersion ?? '',
    markup: c.markup ?? '',
    providerCost: c.costs ? toProtoMoney(c.costs.providerCost) : undefined,
    promptCost: c.costs ? toProtoMoney(c.costs.promptCost) : undefined,
    completionCost: c.costs ? toProtoMoney(c.costs.completionCost) : undefined,
    totalCost: c.costs ? toProtoMoney(c.costs.totalCost) : undefined,
    callCount: String(c.callCount),
    callCost: c.costs ? toProtoMoney(c.costs.callCost) : undefined,
    priceOrigin: toProtoPriceOrigin(c.priceOrigin),
    rateTime: toProtoTimestamp(c.rateTime),
    serviceTier: SERVICE_TIER_NUMBER.get(c.serviceTier) as PbServiceTier,
    toolCalls: Object.fromEntries(Object.entries(c.toolCalls).map(([tool, n]) => [tool, String(n)])),
    tags: { ...c.tags },
    apiKeyId: c.apiKeyId,
  };
}

/** Token classes (numbers or exact bigint sums) to the wire's int64 strings. */
function toProtoTokens(t: { [K in keyof DomainTokenCounts]: number | bigint }, total: number | bigint): TokenCounts {
  return { ...(Object.fromEntries(TOKEN_CLASSES.map((k) => [k, t[k].toString()])) as Omit<TokenCounts, 'totalTokens'>), totalTokens: total.toString() };
}

export function toProtoSums(s: RollupSums): PbUsageSums {
  const tokens = toProtoTokens(s, s.totalTokens);
  return {
    messageCount: s.messageCount.toString(),
    unpricedMessageCount: s.unpricedMessageCount.toString(),
    tokens,
    providerCost: toProtoMoney(s.providerCost),
    promptCost: toProtoMoney(s.promptCost),
    completionCost: toProtoMoney(s.completionCost),
    totalCost: toProtoMoney(s.totalCost),
    callCount: s.callCount.toString(),
    callCost: toProtoMoney(s.callCost),
  };
}

const RESERVATION_STATUS: Record<Reservation['status'], PbReservationStatus> = {
  held: PbReservationStatus.RESERVATION_STATUS_HELD,
  settled: PbReservationStatus.RESERVATION_STATUS_SETTLED,
  released: PbReservationStatus.RESERVATION_STATUS_RELEASED,
  expired: PbReservationStatus.RESERVATION_STATUS_EXPIRED,
};

/** `withTags` false: the answer of the charge that settles it, which carries the charge's own tags (and must stay within its size bound, handlers/answer-size.ts). */
export function toProtoReservation(r: Reservation, withTags = true): PbReservation {
  return {
    accountId: r.accountId,
    reservationId: r.reservationId,
    idempotencyKey: r.idempotencyKey,
    userId: r.userId,
    status: RESERVATION_STATUS[r.status],
    heldMessages: r.heldMessages.toString(),
    heldTokens: r.heldTokens.toString(),
    heldCost: toProtoMoney(r.heldCost),
    periodDay: r.periodDay,
    createTime: toProtoTimestamp(r.createTime),
    expireTime: toProtoTimestamp(r.expireTime),
    finishTime: r.finishTime ? toProtoTimestamp(r.finishTime) : undefined,
    chargeId: r.chargeId ?? '',
    creditHeld: toProtoMoney((r.creditHolds ?? []).reduce((a, h) => a.plus(h.amount), new Dec(0))),
    tags: withTags ? (r.tags ?? {}) : {},
    apiKeyId: r.apiKeyId ?? '',
  };
}
