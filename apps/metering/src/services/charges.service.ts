import {
  ChargeRecord,
  ConflictRetryError,
  diffChargeContent,
  IdempotencyConflictError,
  RecordChargeRequestInput,
  utcDay,
  validateRecordCharge,
} from '@metering/domain';
import { CURRENCY_CODE, totalTokens } from '@metering/pricing';
import { randomUUID } from 'node:crypto';
import { addChargeToRollups } from '../store/usage.repo';
import { findChargeByIdempotencyKey, insertChargeIfAbsent } from '../store/charges.repo';
import { Db, inTransaction } from '../store/db';
import { PricingService } from './pricing.service';

export interface RecordChargeResult {
  charge: ChargeRecord;
  /** True when the key had been used with the same content: nothing new was written. */
  replayed: boolean;
}

/** RecordCharge: validate, price, store the charge and its rollups in one transaction, idempotently. */
export class ChargesService {
  constructor(
    private readonly db: Db,
    private readonly pricing: PricingService,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  async recordCharge(raw: RecordChargeRequestInput): Promise<RecordChargeResult> {
    const input = validateRecordCharge(raw, this.clock());
    return inTransaction(this.db, async (tx) => {
      const charge: ChargeRecord = {
        ...input,
        chargeId: randomUUID(),
        totalTokens: totalTokens(input.tokens),
        usageDate: utcDay(input.usageTime),
        recordTime: this.clock(),
        currencyCode: CURRENCY_CODE,
        ...(await this.pricing.priceCharge(tx, input)),
      };
      const inserted = await insertChargeIfAbsent(tx, charge);
      if (inserted) {
        await addChargeToRollups(tx, inserted);
        return { charge: inserted, replayed: false };
      }
      // The key exists (committed by an earlier or a concurrent call): a replay or a conflict.
      const existing = await findChargeByIdempotencyKey(tx, input.accountId, input.idempotencyKey);
      if (!existing) throw new ConflictRetryError();
      const differs = diffChargeContent(existing, input);
      if (differs.length > 0) throw new IdempotencyConflictError(input.idempotencyKey, differs);
      return { charge: existing, replayed: true };
    });
  }
}
