import type { ChargeRecord, ChargeType, JsonObject, PricingStatus, RequestType } from '@metering/domain';
import type { Tx } from './db';

/** SQL of the charges table. Runs inside the caller's transaction; no business rules. */

interface ChargeRow {
  account_id: string;
  charge_id: string;
  idempotency_key: string;
  user_id: string;
  session_key: string;
  provider: string;
  model: string;
  charge_type: ChargeType;
  request_type: RequestType;
  prompt_tokens: string;
  completion_tokens: string;
  reasoning_tokens: string;
  cached_prompt_tokens: string;
  cache_write_tokens: string;
  total_tokens: string;
  reference: string;
  endpoint: string;
  response_time_ms: string | null;
  was_cached: boolean;
  had_error: boolean;
  error_message: string;
  metadata: JsonObject;
  usage_time: Date;
  usage_time_supplied: boolean;
  usage_date: string;
  record_time: Date;
  pricing_status: PricingStatus;
  price_version: string | null;
  markup: string | null;
  currency_code: string;
  provider_cost: string | null;
  prompt_cost: string | null;
  completion_cost: string | null;
  total_cost: string | null;
}

export function toChargeRow(c: ChargeRecord): Omit<ChargeRow, 'record_time'> {
  return {
    account_id: c.accountId,
    charge_id: c.chargeId,
    idempotency_key: c.idempotencyKey,
    user_id: c.userId,
    session_key: c.sessionKey,
    provider: c.provider,
    model: c.model,
    charge_type: c.chargeType,
    request_type: c.requestType,
    prompt_tokens: String(c.tokens.promptTokens),
    completion_tokens: String(c.tokens.completionTokens),
    reasoning_tokens: String(c.tokens.reasoningTokens),
    cached_prompt_tokens: String(c.tokens.cachedPromptTokens),
    cache_write_tokens: String(c.tokens.cacheWriteTokens),
    total_tokens: String(c.totalTokens),
    reference: c.reference,
    endpoint: c.endpoint,
    response_time_ms: c.responseTimeMs === null ? null : String(c.responseTimeMs),
    was_cached: c.wasCached,
    had_error: c.hadError,
    error_message: c.errorMessage,
    metadata: c.metadata,
    usage_time: c.usageTime,
    usage_time_supplied: c.usageTimeSupplied,
    usage_date: c.usageDate,
    pricing_status: c.pricingStatus,
    price_version: c.priceVersion,
    markup: c.markup,
    currency_code: c.currencyCode,
    provider_cost: c.costs?.providerCost ?? null,
    prompt_cost: c.costs?.promptCost ?? null,
    completion_cost: c.costs?.completionCost ?? null,
    total_cost: c.costs?.totalCost ?? null,
  };
}

export function fromChargeRow(r: ChargeRow): ChargeRecord {
  return {
    chargeId: r.charge_id,
    accountId: r.account_id,
    userId: r.user_id,
    idempotencyKey: r.idempotency_key,
    sessionKey: r.session_key,
    provider: r.provider,
    model: r.model,
    chargeType: r.charge_type,
    requestType: r.request_type,
    tokens: {
      promptTokens: Number(r.prompt_tokens),
      completionTokens: Number(r.completion_tokens),
      reasoningTokens: Number(r.reasoning_tokens),
      cachedPromptTokens: Number(r.cached_prompt_tokens),
      cacheWriteTokens: Number(r.cache_write_tokens),
    },
    totalTokens: Number(r.total_tokens),
    reference: r.reference,
    endpoint: r.endpoint,
    responseTimeMs: r.response_time_ms === null ? null : Number(r.response_time_ms),
    wasCached: r.was_cached,
    hadError: r.had_error,
    errorMessage: r.error_message,
    metadata: r.metadata,
    usageTime: r.usage_time,
    usageTimeSupplied: r.usage_time_supplied,
    usageDate: r.usage_date,
    recordTime: r.record_time,
    pricingStatus: r.pricing_status,
    priceVersion: r.price_version,
    markup: r.markup,
    currencyCode: r.currency_code,
    costs:
      r.total_cost === null
        ? null
        : {
            providerCost: r.provider_cost as string,
            promptCost: r.prompt_cost as string,
            completionCost: r.completion_cost as string,
            totalCost: r.total_cost,
          },
  };
}

/**
 * Inserts the charge unless its idempotency key is taken. Returns the stored
 * charge, or undefined when the key exists (a concurrent insert of the same
 * key waits for the other transaction and then does nothing).
 */
export async function insertChargeIfAbsent(tx: Tx, charge: ChargeRecord): Promise<ChargeRecord | undefined> {
  const rows: ChargeRow[] = await tx('charges')
    .insert(toChargeRow(charge))
    .onConflict(['account_id', 'idempotency_key'])
    .ignore()
    .returning('*');
  return rows.length ? fromChargeRow(rows[0]) : undefined;
}

export async function findChargeByIdempotencyKey(tx: Tx, accountId: string, idempotencyKey: string): Promise<ChargeRecord | undefined> {
  const row: ChargeRow | undefined = await tx('charges').where({ account_id: accountId, idempotency_key: idempotencyKey }).first();
  return row ? fromChargeRow(row) : undefined;
}
