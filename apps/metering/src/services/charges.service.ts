import {
  ChargeInput,
  ChargeRecord,
  ConflictRetryError,
  costsOf,
  diffChargeContent,
  IdempotencyConflictError,
  RecordChargeRequestInput,
  utcDay,
  validateRecordCharge,
} from '@metering/domain';
import { computeCost, CURRENCY_CODE, Dec, formatDecimal, PriceTable, totalTokens } from '@metering/pricing';
import { randomUUID } from 'node:crypto';
import { addChargeToRollups } from '../store/usage.repo';
import { findChargeByIdempotencyKey, insertChargeIfAbsent } from '../store/charges.repo';
import { Db, inTransaction, Tx } from '../store/db';
import { findMarkup } from '../store/markups.repo';

export interface RecordChargeResult {
  charge: ChargeRecord;
  /** True when the key had been used with the same content: nothing new was written. */
  replayed: boolean;
}

/** RecordCharge: validate, price, store the charge and its rollups in one transaction, idempotently. */
export class ChargesService {
  constructor(
    private readonly db: Db,
    private readonly prices: PriceTable,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  async recordCharge(raw: RecordChargeRequestInput): Promise<RecordChargeResult> {
    const input = validateRecordCharge(raw, this.clock());
    return inTransaction(this.db, async (tx) => {
      const inserted = await insertChargeIfAbsent(tx, await this.priced(tx, input));
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

  /**
   * The charge with its costs: the price in effect at the usage time times the
   * markup of its charge type, provider and model (1 when none is set). A model
   * without a price is recorded unpriced, with no cost invented.
   */
  private async priced(tx: Tx, input: ChargeInput): Promise<ChargeRecord> {
    const base = {
      ...input,
      chargeId: randomUUID(),
      totalTokens: totalTokens(input.tokens),
      usageDate: utcDay(input.usageTime),
      recordTime: this.clock(),
      currencyCode: CURRENCY_CODE,
    };
    const price = this.prices.priceAt(input.provider, input.model, input.usageTime);
    if (!price) return { ...base, pricingStatus: 'unpriced', priceVersion: null, markup: null, costs: null };
    const markup = (await findMarkup(tx, input))?.factor ?? new Dec(1);
    return {
      ...base,
      pricingStatus: 'priced',
      priceVersion: price.version,
      markup: formatDecimal(markup),
      costs: costsOf(computeCost(price, input.tokens, markup)),
    };
  }
}
