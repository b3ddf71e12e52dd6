import { ImportChargesRequest, ImportChargesResponse, RecordChargeRequest, RecordChargeResponse, RecordChargesRequest, RecordChargesResponse } from '@metering/contracts';
import { DomainError, ValidationError } from '@metering/domain';
import { ChargesService, MAX_BATCH, RecordChargeResult } from '../services/charges.service';
import { checkAnswerFits, errorResult } from './answer-size';
import type { Caller } from '../grpc/auth';
import { toProtoCharge, toProtoReservation } from './convert';

const toProtoRecorded = (r: RecordChargeResult): RecordChargeResponse => ({
  charge: toProtoCharge(r.charge),
  replayed: r.replayed,
  reservation: r.reservation ? toProtoReservation(r.reservation, false) : undefined,
});

/** RecordCharge: wire -> service -> wire. The generated request already has the shape of RecordChargeRequestInput. */
export const recordChargeHandler =
  (service: ChargesService) =>
  async (req: RecordChargeRequest, who?: Caller): Promise<RecordChargeResponse> => {
    return toProtoRecorded(await service.recordCharge(req, who?.keyId ?? ''));
  };

/**
 * RecordCharges: one result per charge, in request order; a charge's own error becomes its google.rpc.Status.
 * A batch whose answer could exceed the message limit is refused before anything is written.
 */
export const recordChargesHandler =
  (service: ChargesService) =>
  async (req: RecordChargesRequest, who?: Caller): Promise<RecordChargesResponse> => {
    if (req.charges.length === 0 || req.charges.length > MAX_BATCH) {
      throw new ValidationError([{ field: 'charges', description: `must hold 1 to ${MAX_BATCH} charges, got ${req.charges.length}` }]);
    }
    checkAnswerFits(req);
    const results = await service.recordCharges(req.charges, who?.keyId ?? '');
    return { results: results.map((r) => (r instanceof DomainError ? errorResult(r) : { result: { $case: 'recorded', value: toProtoRecorded(r) } })) };
  };

/**
 * ImportCharges (the operator key only, by the policy table): as RecordCharges, one result per
 * charge, a charge with a kept cost stored with it. The answer echoes each charge as RecordCharges
 * would (a kept cost is no longer in the answer than the costs the bound already allows for), so
 * the same size check bounds it.
 */
export const importChargesHandler =
  (service: ChargesService) =>
  async (req: ImportChargesRequest): Promise<ImportChargesResponse> => {
    if (req.charges.length === 0 || req.charges.length > MAX_BATCH) {
      throw new ValidationError([{ field: 'charges', description: `must hold 1 to ${MAX_BATCH} charges, got ${req.charges.length}` }]);
    }
    checkAnswerFits({ charges: req.charges.flatMap((c) => (c.charge ? [c.charge] : [])) });
    const results = await service.importCharges(req.charges);
    return { results: results.map((r) => (r instanceof DomainError ? errorResult(r) : { result: { $case: 'recorded', value: toProtoRecorded(r) } })) };
  };
