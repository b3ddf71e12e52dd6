import { RecordChargeRequest, RecordChargeResponse } from '@metering/contracts';
import { ChargesService } from '../services/charges.service';
import { toProtoCharge } from './convert';

/** RecordCharge: wire -> service -> wire. The generated request already has the shape of RecordChargeRequestInput. */
export const recordChargeHandler =
  (service: ChargesService) =>
  async (req: RecordChargeRequest): Promise<RecordChargeResponse> => {
    const { charge, replayed } = await service.recordCharge(req);
    return { charge: toProtoCharge(charge), replayed };
  };
