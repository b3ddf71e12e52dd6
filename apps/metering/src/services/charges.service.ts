import {
  ChargeInput,
  ChargeRecord,
  ConflictRetryError,
  diffChargeContent,
  DomainError,
  IdempotencyConflictError,
  RecordChargeRequestInput,
  utcDay,
  validateRecordCharge,
} from '@metering/domain';
import { CURRENCY_CODE, totalTokens } from '@metering/pricing';
import { randomUUID } from 'node:crypto';
import { findChargesByIdempotencyKeys, insertChargesIfAbsent } from '../store/charges.repo';
import { Db, inTransaction } from '../store/db';
import { applyRollupDeltas, deltaOfCharge } from '../store/usage.repo';
import { PricingService } from './pricing.service';

export interface RecordChargeResult {
  charge: ChargeRecord;
  /** True when the key had been used with the same content: nothing new was written. */
  replayed: boolean;
}

/** The outcome of one charge of a batch: recorded (or replayed), or a domain error for that charge alone. */
export type BatchItemResult = RecordChargeResult | DomainError;

/** At most this many charges are written in one transaction. */
export const MAX_BATCH = 1000;

interface Pending {
  input: ChargeInput;
  resolve: (r: BatchItemResult) => void;
  reject: (e: unknown) => void;
}

/**
 * RecordCharge and RecordCharges: validate, price, store the charges and
 * their rollups in one transaction, idempotently.
 *
 * Group commit: RecordCharge calls that arrive while `maxInFlight`
 * transactions are running wait in a queue, and the next transaction writes
 * all of them (up to MAX_BATCH) together, with one multi-row insert and
 * pre-aggregated rollup upserts in key order. A call is answered only after
 * its transaction commits; when a transaction fails, exactly the calls in it
 * fail, with the translated (retry-safe) error.
 */
export class ChargesService {
  private readonly queue: Pending[] = [];
  private inFlight = 0;

  constructor(
    private readonly db: Db,
    private readonly pricing: PricingService,
    private readonly clock: () => Date = () => new Date(),
    private readonly maxInFlight = 2,
  ) {}

  async recordCharge(raw: RecordChargeRequestInput): Promise<RecordChargeResult> {
    const input = validateRecordCharge(raw, this.clock());
    const result = await new Promise<BatchItemResult>((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      this.drain();
    });
    if (result instanceof DomainError) throw result;
    return result;
  }

  /** A batch of up to MAX_BATCH charges: invalid ones fail alone; the valid ones are written in one transaction. */
  async recordCharges(raws: RecordChargeRequestInput[]): Promise<BatchItemResult[]> {
    const now = this.clock();
    const validated = raws.map((raw): ChargeInput | DomainError => {
      try {
        return validateRecordCharge(raw, now);
      } catch (err) {
        if (err instanceof DomainError) return err;
        throw err;
      }
    });
    const valid = validated.filter((v): v is ChargeInput => !(v instanceof DomainError));
    const written = valid.length ? await this.write(valid) : [];
    let next = 0;
    return validated.map((v) => (v instanceof DomainError ? v : written[next++]));
  }

  /** Starts transactions for queued calls while fewer than maxInFlight run. */
  private drain(): void {
    while (this.queue.length > 0 && this.inFlight < this.maxInFlight) {
      const batch = this.queue.splice(0, MAX_BATCH);
      this.inFlight++;
      this.write(batch.map((p) => p.input))
        .then(
          (results) => batch.forEach((p, n) => p.resolve(results[n])),
          (err: unknown) => batch.forEach((p) => p.reject(err)),
        )
        .finally(() => {
          this.inFlight--;
          this.drain();
        });
    }
  }

  /**
   * Writes charges in one transaction: prices them (two reads), inserts the
   * new keys in (account, key) order (so concurrent batches cannot deadlock),
   * answers the others as replays or conflicts, and applies the rollups.
   * Several charges of one batch with the same key are answered as the first
   * one and its replays.
   */
  private write(inputs: ChargeInput[]): Promise<BatchItemResult[]> {
    return inTransaction(this.db, async (tx) => {
      const keyOf = (c: { accountId: string; idempotencyKey: string }) => `${c.accountId}\u0000${c.idempotencyKey}`;
      const byKey = new Map<string, ChargeInput>();
      for (const c of inputs) if (!byKey.has(keyOf(c))) byKey.set(keyOf(c), c);
      const distinct = [...byKey.values()];
      const pricing = await this.pricing.priceCharges(tx, distinct);
      const recordTime = this.clock();
      const charges: ChargeRecord[] = distinct.map((input, n) => ({
        ...input,
        chargeId: randomUUID(),
        totalTokens: totalTokens(input.tokens),
        usageDate: utcDay(input.usageTime),
        recordTime,
        currencyCode: CURRENCY_CODE,
        ...pricing[n],
      }));
      charges.sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : keyOf(a) > keyOf(b) ? 1 : 0));
      const inserted = await insertChargesIfAbsent(tx, charges);
      await applyRollupDeltas(tx, inserted.map(deltaOfCharge));
      // Keys that existed (committed by an earlier or a concurrent call): replays or conflicts.
      const stored = new Map(inserted.map((c) => [keyOf(c), { charge: c, fresh: true }]));
      const missing = distinct.filter((c) => !stored.has(keyOf(c)));
      for (const c of await findChargesByIdempotencyKeys(tx, missing)) stored.set(keyOf(c), { charge: c, fresh: false });
      const firstUse = new Set<string>();
      return inputs.map((input): BatchItemResult => {
        const found = stored.get(keyOf(input));
        if (!found) return new ConflictRetryError();
        const replay = !found.fresh || firstUse.has(keyOf(input));
        firstUse.add(keyOf(input));
        if (!replay) return { charge: found.charge, replayed: false };
        const differs = diffChargeContent(found.charge, input);
        return differs.length > 0 ? new IdempotencyConflictError(input.idempotencyKey, differs) : { charge: found.charge, replayed: true };
      });
    });
  }
}
