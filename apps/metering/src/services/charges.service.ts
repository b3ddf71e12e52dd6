import {
  ChargeInput,
  ChargeRecord,
  ConflictRetryError,
  diffChargeContent,
  DomainError,
  IdempotencyConflictError,
  DEFAULT_TIME_ZONE,
  chargeDay,
  RecordChargeRequestInput,
  Reservation,
  ReservationNotFoundError,
  ReservationStateError,
  ReservationUserMismatchError,
  softLimitCrossings,
  UnavailableError,
  validateRecordCharge,
} from '@metering/domain';
import { CURRENCY_CODE, totalTokens } from '@metering/pricing';
import { randomUUID } from 'node:crypto';
import { findChargesByIdempotencyKeys, insertChargesIfAbsent } from '../store/charges.repo';
import { appendEvents } from '../store/events.repo';
import { Db, inTransaction, Tx } from '../store/db';
import { readWriteSettings } from '../store/limits.repo';
import { finishReservations, lockReservations } from '../store/reservations.repo';
import { applyRollupDeltas, deltaOfCharge, usageChangeOf } from '../store/usage.repo';
import { PricingService } from './pricing.service';
import { holdOf } from './reservations.service';

export interface RecordChargeResult {
  charge: ChargeRecord;
  /** True when the key had been used with the same content: nothing new was written. */
  replayed: boolean;
  /** The reservation the charge settled, when it names one. */
  reservation?: Reservation;
}

/** The outcome of one charge of a batch: recorded (or replayed), or a domain error for that charge alone. */
export type BatchItemResult = RecordChargeResult | DomainError;

/** A map key of two strings (an account and an idempotency key or a reservation id). */
const pair = (a: string, b: string) => `${a}\u0000${b}`;
const keyOf = (c: { accountId: string; idempotencyKey: string }) => pair(c.accountId, c.idempotencyKey);

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
 * its transaction commits; when a transaction fails, the batch is split and
 * retried until only the calls that fail alone fail, each with its own
 * translated error (never another tenant's).
 */
export class ChargesService {
  private readonly queue: Pending[] = [];
  private inFlight = 0;

  constructor(
    private readonly db: Db,
    private readonly pricing: PricingService,
    private readonly clock: () => Date = () => new Date(),
    private readonly maxInFlight = 2,
    /** Told about every write transaction (metrics). */
    private readonly onBatch: (b: { charges: number; priced: number; unpriced: number; seconds: number; ok: boolean }) => void = () => undefined,
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
      this.writeSplitting(batch)
        .finally(() => {
          this.inFlight--;
          this.drain();
        });
    }
  }

  /**
   * Writes the calls of a group commit and answers each. When the transaction
   * fails (one charge may make it fail for all, e.g. by taking a counter past
   * its range), the batch is split in halves and each half retried, down to
   * single calls: the calls that can be written are, and a call that fails
   * alone gets its own (translated) error. An unreachable database fails the
   * whole batch at once (UNAVAILABLE): splitting would not help.
   */
  private async writeSplitting(batch: Pending[]): Promise<void> {
    try {
      const results = await this.write(batch.map((p) => p.input));
      batch.forEach((p, n) => p.resolve(results[n]));
    } catch (err) {
      if (batch.length === 1 || err instanceof UnavailableError) {
        batch.forEach((p) => p.reject(err));
        return;
      }
      const half = Math.ceil(batch.length / 2);
      await this.writeSplitting(batch.slice(0, half));
      await this.writeSplitting(batch.slice(half));
    }
  }

  /**
   * Writes charges in one transaction: locks the reservations they settle
   * (in id order), prices them (two reads), inserts the new keys in
   * (account, key) order (so concurrent batches cannot deadlock), answers the
   * others as replays or conflicts, and applies the rollups together with the
   * settled holds. Several charges of one batch with the same key are
   * answered as the first one and its replays.
   */
  private async write(inputs: ChargeInput[]): Promise<BatchItemResult[]> {
    const started = process.hrtime.bigint();
    let inserted: ChargeRecord[] = [];
    const report = (ok: boolean) =>
      this.onBatch({
        charges: inputs.length,
        priced: inserted.filter((c) => c.pricingStatus === 'priced').length,
        unpriced: inserted.filter((c) => c.pricingStatus === 'unpriced').length,
        seconds: Number(process.hrtime.bigint() - started) / 1e9,
        ok,
      });
    try {
      const results = await this.transact(inputs, (stored) => (inserted = stored));
      report(true);
      return results;
    } catch (err) {
      inserted = [];
      report(false);
      throw err;
    }
  }

  private transact(inputs: ChargeInput[], onInserted: (c: ChargeRecord[]) => void): Promise<BatchItemResult[]> {
    return inTransaction(this.db, async (tx) => {
      const byKey = new Map<string, ChargeInput>();
      for (const c of inputs) if (!byKey.has(keyOf(c))) byKey.set(keyOf(c), c);
      const distinct = [...byKey.values()];
      const { reservations, refused, claimed, contestedClaims } = await this.claimReservations(tx, distinct);
      const insertable = distinct.filter((c) => !refused.has(keyOf(c)));
      const { zones, softLimits } = await readWriteSettings(tx, [...new Set(insertable.map((c) => c.accountId))]);
      const pricing = await this.pricing.priceCharges(tx, insertable);
      const recordTime = this.clock();
      const charges: ChargeRecord[] = insertable.map((input, n) => ({
        ...input,
        chargeId: randomUUID(),
        totalTokens: totalTokens(input.tokens),
        usageDate: chargeDay(input, input.reservationId ? reservations.get(pair(input.accountId, input.reservationId)) : undefined, zones.get(input.accountId) ?? DEFAULT_TIME_ZONE),
        recordTime,
        currencyCode: CURRENCY_CODE,
        ...pricing[n],
      }));
      charges.sort((a, b) => (keyOf(a) < keyOf(b) ? -1 : keyOf(a) > keyOf(b) ? 1 : 0));
      const inserted = await insertChargesIfAbsent(tx, charges);
      // A claiming key committed by a concurrent call since it was looked up: another charge of
      // the batch was refused for a reservation nothing settles. Roll back; the retry sees the key.
      const insertedKeys = new Set(inserted.map(keyOf));
      if ([...contestedClaims].some((id) => !insertedKeys.has(claimed.get(id) ?? ''))) throw new ConflictRetryError();
      onInserted(inserted);
      // The reservations the new charges settle: their holds (if not already expired) give way to the usage.
      const settled = inserted.flatMap((charge) => {
        const reservation = charge.reservationId ? reservations.get(pair(charge.accountId, charge.reservationId)) : undefined;
        return reservation ? [{ charge, reservation }] : [];
      });
      const deltas = inserted.map(deltaOfCharge);
      const counters = await applyRollupDeltas(
        tx,
        deltas,
        settled.filter((s) => s.reservation.status === 'held').map((s) => holdOf(s.reservation, -1)),
      );
      const crossed = softLimits.length ? softLimitCrossings(softLimits, counters, deltas.map(usageChangeOf)) : [];
      await finishReservations(tx, settled.map((s) => ({ ref: s.reservation, status: 'settled', at: recordTime, chargeId: s.charge.chargeId })));
      await appendEvents(tx, [
        ...inserted.map((charge) => ({ kind: 'charge_recorded' as const, charge })),
        ...crossed.map((softLimit) => ({ kind: 'soft_limit_exceeded' as const, softLimit })),
      ]);
      for (const { charge, reservation } of settled) reservations.set(pair(charge.accountId, reservation.reservationId), { ...reservation, status: 'settled', finishTime: recordTime, chargeId: charge.chargeId });
      // Keys that existed (committed by an earlier or a concurrent call): replays or conflicts.
      const stored = new Map(inserted.map((c) => [keyOf(c), { charge: c, fresh: true }]));
      const missing = distinct.filter((c) => !stored.has(keyOf(c)));
      for (const c of await findChargesByIdempotencyKeys(tx, missing)) stored.set(keyOf(c), { charge: c, fresh: false });
      const firstUse = new Set<string>();
      return inputs.map((input): BatchItemResult => {
        const found = stored.get(keyOf(input));
        if (!found) return refused.get(keyOf(input)) ?? new ConflictRetryError();
        const replay = !found.fresh || firstUse.has(keyOf(input));
        firstUse.add(keyOf(input));
        const reservation = found.charge.reservationId ? reservations.get(pair(found.charge.accountId, found.charge.reservationId)) : undefined;
        if (!replay) return { charge: found.charge, replayed: false, reservation };
        const differs = diffChargeContent(found.charge, input);
        return differs.length > 0 ? new IdempotencyConflictError(input.idempotencyKey, differs) : { charge: found.charge, replayed: true, reservation };
      });
    });
  }

  /**
   * Locks the reservations the charges name and decides which charges may
   * settle theirs: a reservation that is held (or already expired: the usage
   * happened, so the charge is recorded) is claimed by the first charge that
   * names it. The others are refused (not found, another user's, already
   * settled or released), unless their key turns out to be a replay.
   */
  private async claimReservations(tx: Tx, charges: ChargeInput[]) {
    const naming = charges.flatMap((c) => (c.reservationId ? [{ charge: c, reservationId: c.reservationId }] : []));
    const locked = await lockReservations(tx, naming.map(({ charge, reservationId }) => ({ accountId: charge.accountId, reservationId })));
    const reservations = new Map(locked.map((r) => [pair(r.accountId, r.reservationId), r]));
    // A reservation named by several keys of the batch: a key already used is answered by its
    // stored charge (a replay or a conflict) and writes nothing, so it must not claim it.
    const names = new Map<string, number>();
    for (const { charge: c, reservationId } of naming) names.set(pair(c.accountId, reservationId), (names.get(pair(c.accountId, reservationId)) ?? 0) + 1);
    const contested = naming.filter(({ charge: c, reservationId }) => (names.get(pair(c.accountId, reservationId)) ?? 0) > 1).map((n) => n.charge);
    const used = new Set((await findChargesByIdempotencyKeys(tx, contested)).map(keyOf));
    const refused = new Map<string, DomainError>();
    /** The reservations claimed, by the key that claims each; and those another charge of the batch was refused for. */
    const claimed = new Map<string, string>();
    const contestedClaims = new Set<string>();
    for (const { charge: c, reservationId } of naming) {
      const id = pair(c.accountId, reservationId);
      if (used.has(keyOf(c))) continue;
      const r = reservations.get(id);
      const problem = !r
        ? new ReservationNotFoundError(reservationId)
        : r.userId !== c.userId
          ? new ReservationUserMismatchError(r)
          : r.status === 'settled' || r.status === 'released' || claimed.has(id)
            ? new ReservationStateError({ reservationId: r.reservationId, status: claimed.has(id) ? 'settled' : r.status }, 'settle')
            : undefined;
      if (problem) refused.set(keyOf(c), problem);
      else claimed.set(id, keyOf(c));
      if (problem && claimed.has(id)) contestedClaims.add(id);
    }
    return { reservations, refused, claimed, contestedClaims };
  }
}
