import { RecordChargeRequest, RecordChargeResponse } from '@metering/contracts';
import { RecordChargeRequestInput } from '@metering/domain';
import { ChargesService } from '../services/charges.service';
import { toProtoCharge } from './convert';

/** RecordCharge: wire -> service -> wire. */
export function fromProtoRecordCharge(r: RecordChargeRequest): RecordChargeRequestInput {
  return {
    accountId: r.accountId,
    userId: r.userId,
    idempotencyKey: r.idempotencyKey,
    sessionKey: r.sessionKey,
    provider: r.provider,
    model: r.model,
    chargeType: r.chargeType,
    requestType: r.requestType,
    promptTokens: r.promptTokens,
    completionTokens: r.completionTokens,
    reasoningTokens: r.reasoningTokens,
    cachedPromptTokens: r.cachedPromptTokens,
    cacheWriteTokens: r.cacheWriteTokens,
    reference: r.reference,
    endpoint: r.endpoint,
    responseTimeMs: r.responseTimeMs,
    wasCached: r.wasCached,
    hadError: r.hadError,
    errorMessage: r.errorMessage,
    metadata: r.metadata,
    usageTime: r.usageTime,
  };
}

export const recordChargeHandler =
  (service: ChargesService) =>
  async (req: RecordChargeRequest): Promise<RecordChargeResponse> => {
    const { charge, replayed } = await service.recordCharge(fromProtoRecordCharge(req));
    return { charge: toProtoCharge(charge), replayed };
  };
