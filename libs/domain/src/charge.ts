import { Dec, formatDecimal, PriceOrigin, TokenCounts } from '@metering/pricing';
import { billedFields, BilledUsageInput, checkBilledUsage, MAX_CALLS, ServiceTierName } from './billed-usage';
import { canonicalJson } from './json';
import { checkReservationId } from './reservation';
import { checkTags, sameTags, Tags } from './tags';
import { checkEnum, checkId, checkInt, checkModel, checkProvider, checkText, checkTimestamp, MAX_KEY_LENGTH, TimestampInput, Violations } from './validation';

export type ChargeType = 'completion' | 'plugin' | 'tool';
export type RequestType = 'chat' | 'summarization' | 'embedding' | 'tool_call' | 'vision';
export type PricingStatus = 'priced' | 'unpriced';
/** Where a charge's cost came from: a price's origin, or 'imported' (a cost kept by ImportCharges). */
export type ChargePriceOrigin = PriceOrigin | 'imported';

/** Enum numbers of the contract (proto/metering/v1/charge.proto) to domain names. */
export const CHARGE_TYPE_BY_NUMBER: Record<number, ChargeType> = { 1: 'completion', 2: 'plugin', 3: 'tool' };
export const REQUEST_TYPE_BY_NUMBER: Record<number, RequestType> = { 1: 'chat', 2: 'summarization', 3: 'embedding', 4: 'tool_call', 5: 'vision' };

export const MAX_RESPONSE_TIME_MS = 86_400_000;
export const MAX_METADATA_BYTES = 16 * 1024;
export const MAX_METADATA_DEPTH = 8;
/** How far ahead of the server's clock a usage_time may be. */
export const MAX_CLOCK_SKEW_MS = 60 * 60 * 1000;
export const EARLIEST_USAGE_TIME = new Date('2000-01-01T00:00:00Z');

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

/** A RecordCharge request as it comes off the wire (int64 as strings, enums as numbers), not yet trusted. */
export interface RecordChargeRequestInput extends BilledUsageInput {
  accountId: string;
  userId: string;
  idempotencyKey: string;
  sessionKey: string;
  provider: string;
  model: string;
  chargeType: number;
  requestType: number;
  callCount: string;
  reference: string;
  endpoint: string;
  responseTimeMs?: string;
  wasCached: boolean;
  hadError: boolean;
  errorMessage: string;
  metadata: unknown;
  /** Seconds (int64 string) and nanos of the usage time, when supplied. */
  usageTime?: TimestampInput;
  /** A held reservation the charge settles; '' or absent for none. */
  reservationId?: string;
  /** The caller's tags (map<string, string>). */
  tags?: Record<string, string>;
}

/** A validated charge to record. */
export interface ChargeInput {
  accountId: string;
  userId: string;
  idempotencyKey: string;
  sessionKey: string;
  provider: string;
  model: string;
  chargeType: ChargeType;
  requestType: RequestType;
  tokens: TokenCounts;
  /** Per-call priced calls (tool or plugin). */
  callCount: number;
  /** Tool calls inside the completion, by tool name (no zero counts). */
  toolCalls: Record<string, number>;
  serviceTier: ServiceTierName;
  reference: string;
  endpoint: string;
  responseTimeMs: number | null;
  wasCached: boolean;
  hadError: boolean;
  errorMessage: string;
  metadata: JsonObject;
  /** When the usage happened, at millisecond precision. */
  usageTime: Date;
  /** Whether the caller supplied usageTime (else it is the server's clock). */
  usageTimeSupplied: boolean;
  /** The reservation the charge settles, or null. */
  reservationId: string | null;
  /** The caller's tags, keys in order. */
  tags: Tags;
  /** The API key that recorded the charge; '' for the operator or with authentication off. */
  apiKeyId: string;
}

/** Exact costs of a priced charge, as canonical decimal strings in USD. */
export interface ChargeCosts {
  providerCost: string;
  promptCost: string;
  completionCost: string;
  callCost: string;
  totalCost: string;
}

/** A charge as stored. */
export interface ChargeRecord extends ChargeInput {
  chargeId: string;
  totalTokens: number;
  /** The day of usageTime in the account's time zone, YYYY-MM-DD: the rollup the charge counts in. */
  usageDate: string;
  recordTime: Date;
  pricingStatus: PricingStatus;
  priceVersion: string | null;
  markup: string | null;
  /** Where the price came from ('imported': a kept cost); null when unpriced. */
  priceOrigin: ChargePriceOrigin | null;
  /** When the charge was last priced (record time, or re-rating). */
  rateTime: Date;
  currencyCode: string;
  costs: ChargeCosts | null;
  /**
   * What the charge is summed under in the dimension rollups: the values of
   * the account's declared tag keys at record time, or null when the account
   * had no declared dimensions then (libs/domain/src/dimensions.ts).
   */
  dimensions?: Tags | null;
  /** The local hour (0 to 23) of its usage day it is summed under there; null with dimensions null. */
  rollupHour?: number | null;
}

function checkMetadata(v: Violations, value: unknown): JsonObject {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    v.add('metadata', 'must be a JSON object');
    return {};
  }
  let problem: string | undefined;
  const walk = (node: unknown, depth: number): void => {
    if (problem) return;
    if (depth > MAX_METADATA_DEPTH) problem = `must be at most ${MAX_METADATA_DEPTH} levels deep`;
    else if (typeof node === 'number' && !Number.isFinite(node)) problem = 'must not contain NaN or Infinity';
    else if (typeof node === 'string' && node.includes('\u0000')) problem = 'must not contain NUL characters';
    else if (Array.isArray(node)) node.forEach((x) => walk(x, depth + 1));
    else if (node !== null && typeof node === 'object') {
      for (const [k, x] of Object.entries(node)) {
        if (k.includes('\u0000')) problem = 'must not contain NUL characters';
        walk(x, depth + 1);
      }
    }
  };
  walk(value, 1);
  if (!problem && Buffer.byteLength(JSON.stringify(value), 'utf8') > MAX_METADATA_BYTES) {
    problem = `must be at most ${MAX_METADATA_BYTES} bytes as JSON`;
  }
  if (problem) {
    v.add('metadata', problem);
    return {};
  }
  return value as JsonObject;
}

function checkUsageTime(v: Violations, value: RecordChargeRequestInput['usageTime'], now: Date): Date {
  return checkTimestamp(v, 'usage_time', value, now, EARLIEST_USAGE_TIME, new Date(now.getTime() + MAX_CLOCK_SKEW_MS));
}

/** Validates a RecordCharge request; throws ValidationError naming every bad field. */
export function validateRecordCharge(raw: RecordChargeRequestInput, now: Date, apiKeyId = ''): ChargeInput {
  const v = new Violations();
  const billed = checkBilledUsage(v, raw);
  const input: ChargeInput = {
    accountId: checkId(v, 'account_id', raw.accountId),
    userId: checkId(v, 'user_id', raw.userId),
    idempotencyKey: checkText(v, 'idempotency_key', raw.idempotencyKey, MAX_KEY_LENGTH, { required: true }),
    sessionKey: checkText(v, 'session_key', raw.sessionKey, 255),
    provider: checkProvider(v, 'provider', raw.provider),
    model: checkModel(v, 'model', raw.model),
    chargeType: checkEnum(v, 'charge_type', raw.chargeType, CHARGE_TYPE_BY_NUMBER) ?? 'completion',
    requestType: checkEnum(v, 'request_type', raw.requestType, REQUEST_TYPE_BY_NUMBER) ?? 'chat',
    ...billed,
    callCount: checkInt(v, 'call_count', raw.callCount, 0, MAX_CALLS),
    reference: checkText(v, 'reference', raw.reference, 255),
    endpoint: checkText(v, 'endpoint', raw.endpoint, 255),
    responseTimeMs: raw.responseTimeMs === undefined ? null : checkInt(v, 'response_time_ms', raw.responseTimeMs, 0, MAX_RESPONSE_TIME_MS),
    wasCached: raw.wasCached === true,
    hadError: raw.hadError === true,
    errorMessage: checkText(v, 'error_message', raw.errorMessage, 4096, { multiline: true }),
    metadata: checkMetadata(v, raw.metadata),
    usageTime: checkUsageTime(v, raw.usageTime, now),
    usageTimeSupplied: raw.usageTime !== undefined,
    reservationId: checkReservationId(v, 'reservation_id', raw.reservationId ?? '', false) || null,
    tags: checkTags(v, 'tags', raw.tags),
    apiKeyId,
  };
  v.done();
  return input;
}

/**
 * The request fields (proto names) in which a retry differs from the stored
 * charge with the same idempotency key. Empty means a true replay. usage_time
 * is compared only when the retry supplies it (otherwise it is the server's
 * clock at the first attempt). What was used is compared as billed (token
 * classes, tool calls, service tier), whether it came as explicit counts or
 * as a provider usage object.
 */
export function diffChargeContent(stored: ChargeInput, incoming: ChargeInput): string[] {
  const fields: Array<[string, unknown, unknown]> = [
    ['user_id', stored.userId, incoming.userId],
    ['session_key', stored.sessionKey, incoming.sessionKey],
    ['provider', stored.provider, incoming.provider],
    ['model', stored.model, incoming.model],
    ['charge_type', stored.chargeType, incoming.chargeType],
    ['request_type', stored.requestType, incoming.requestType],
    ...billedFields(stored, incoming),
    ['call_count', stored.callCount, incoming.callCount],
    ['reference', stored.reference, incoming.reference],
    ['endpoint', stored.endpoint, incoming.endpoint],
    ['response_time_ms', stored.responseTimeMs, incoming.responseTimeMs],
    ['was_cached', stored.wasCached, incoming.wasCached],
    ['had_error', stored.hadError, incoming.hadError],
    ['error_message', stored.errorMessage, incoming.errorMessage],
    ['metadata', canonicalJson(stored.metadata), canonicalJson(incoming.metadata)],
    ['reservation_id', stored.reservationId, incoming.reservationId],
    ['tags', true, sameTags(stored.tags, incoming.tags)],
  ];
  if (incoming.usageTimeSupplied) fields.push(['usage_time', stored.usageTime.getTime(), incoming.usageTime.getTime()]);
  return fields.filter(([, a, b]) => a !== b).map(([name]) => name);
}

/** Money of a priced charge as canonical strings (for the store and the wire). */
export function costsOf(c: { providerCost: Dec; promptCost: Dec; completionCost: Dec; callCost: Dec; totalCost: Dec }): ChargeCosts {
  return {
    providerCost: formatDecimal(c.providerCost),
    promptCost: formatDecimal(c.promptCost),
    completionCost: formatDecimal(c.completionCost),
    callCost: formatDecimal(c.callCost),
    totalCost: formatDecimal(c.totalCost),
  };
}
