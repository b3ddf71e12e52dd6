import { ChargeType, CheckLimitsRequest, RecordChargeRequest } from '@metering/contracts';

/** A valid RecordCharge request as a backend sends it: gpt-4o, 100 prompt + 200 completion tokens ("0.00225" USD). */
export const chargeRequest = (over: Partial<RecordChargeRequest> = {}): RecordChargeRequest => RecordChargeRequest.fromPartial({
  accountId: 'acme', userId: 'u1', idempotencyKey: 'k1', sessionKey: '', provider: 'openai', model: 'gpt-4o',
  chargeType: ChargeType.CHARGE_TYPE_COMPLETION, requestType: 0, promptTokens: '100', completionTokens: '200',
  reasoningTokens: '0', cachedPromptTokens: '0', cacheWriteTokens: '0', cacheWrite1hTokens: '0', callCount: '0', reference: '', endpoint: '',
  responseTimeMs: undefined, wasCached: false, hadError: false, errorMessage: '', metadata: undefined, usageTime: undefined, reservationId: '', ...over,
});

/** A CheckLimits request: plain unless `over` reserves. */
export const checkRequest = (over: Partial<CheckLimitsRequest> = {}): CheckLimitsRequest => ({
  accountId: 'acme', userId: 'u1', additionalTokens: '0', additionalCost: undefined, reserve: false, idempotencyKey: '', estimate: undefined, holdSeconds: 0, denyAsError: false, tags: {}, ...over,
});
