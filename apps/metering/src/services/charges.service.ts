import {
  ChargeInput,
  ChargeRecord,
  chargeDay,
  ConflictRetryError,
  contestedClaims,
  DEFAULT_TIME_ZONE,
  DEFAULT_MAX_VALUES_PER_DAY,
  diffChargeContent,
  dimensionValueId,
  dimensionValues,
  dimensionValuesWanted,
  DimensionValuesExhaustedError,
  refusalOf,
  localDay,
  rollupHour,
  DomainError,
  entriesOf,
  endedAt,
  eventsAfterWrite,
  IdempotencyConflictError,
  ImportedChargeInput,
  KeptPricing,
  LedgerChange,
  RecordChargeRequestInput,
  Reservation,
  chargeKey,
  reservationKey,
  settlementClaims,
  UnavailableError,
  validateImportedCharge,
  validateRecordCharge,
} from '@metering/domain';
import { CURRENCY_CODE, Dec, totalTokens } from '@metering/pricing';
import { randomUUID } from 'node:crypto';
import { findChargesByIdempotencyKeys, insertChargesIfAbsent } from '../store/charges.repo';
import { hasAlerts } from '../store/alerts.repo';
import { Db, inTransaction, onCitus, read, Tx } from '../store/db';
import { applyEntries, recordNewCharges } from '../store/ledger.repo';
import { lockReservations } from '../store/reservations.repo';
import { Books } from './credits.service';
import { PricingService } from './pricing.service';
import { AccountSettings, SettingsCache, SettingsView } from './settings-cache';

export interface RecordChargeResult {
  charge: ChargeRecord;
  /** True when the key had been used with the same content: nothing new was written. */
  replayed: boolean;
  /** The reservation the charge settled, when it names one. */
  reservation?: Reservation;
}

/** The outcome of one charge of a batch: recorded (or replayed), or a domain error for that charge alone. */
export type BatchItemResult = RecordChargeResult | DomainError;


/** At most `size` tasks at once; the others wait in arrival order. */
class Slots {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly size: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running >= this.size) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}

/** A call with a key already used: a replay of the stored charge, or a conflict when its content differs. */
function replayOf(stored: ChargeRecord, input: ChargeInput, reservation?: Reservation): BatchItemResult {
  const differs = diffChargeContent(stored, input);
  return differs.length > 0 ? new IdempotencyConflictError(input.idempotencyKey, differs) : { charge: stored, replayed: true, reservation };
}

/** The first charge of each idempotency key, in order (the others of a batch are its replays or conflicts). */
function distinctByKey(inputs: ChargeInput[]): ChargeInput[] {
  const byKey = new Map<string, ChargeInput>();
  for (const c of inputs) if (!byKey.has(chargeKey(c))) byKey.set(chargeKey(c), c);
  return [...byKey.values()];
}

/**
 * Each call's answer: the charge stored for its key, new (the first call with it) or a replay
 * (or a conflict when the content differs), with the reservation it settled; a key with no stored
 * charge fails with its own error (`failed`), or ABORTED (retry-safe).
 */
function answersOf(
  inputs: ChargeInput[],
  stored: ReadonlyMap<string, { charge: ChargeRecord; fresh: boolean }>,
  reservations: ReadonlyMap<string, Reservation> = new Map(),
  failed: (key: string) => DomainError | undefined = () => undefined,
): BatchItemResult[] {
  const firstUse = new Set<string>();
  return inputs.map((input): BatchItemResult => {
    const found = stored.get(chargeKey(input));
    if (!found) return failed(chargeKey(input)) ?? new ConflictRetryError();
    const replay = !found.fresh || firstUse.has(chargeKey(input));
    firstUse.add(chargeKey(input));
    const reservation = found.charge.reservationId ? reservations.get(reservationKey(found.charge.accountId, found.charge.reservationId)) : undefined;
    return replay ? replayOf(found.charge, input, reservation) : { charge: found.charge, replayed: false, reservation };
  });
}

/** A batch item's validation: the input, or the domain error that item alone fails with. */
function orDomainError(validate: () => ChargeInput): ChargeInput | DomainError {
  try {
    return validate();
  } catch (err) {
    if (err instanceof DomainError) return err;
    throw err;
  }
}

/** At most this many admitted dimension values are remembered per process (5 keys x 1,000 values x 20 busy accounts). */
const MAX_KNOWN_VALUES = 100_000;

/** At most this many charges are written in one transaction. */
export const MAX_BATCH = 1000;

interface Pending {
  input: ChargeInput;
  resolve: (r: BatchItemResult) => void;
  reject: (e: unknown) => void;
}

/**
 * RecordCharge and RecordCharges: validate, price, store the charges and
 * their rollups atomically (one statement, or one transaction), idempotently.
 *
 * Group commit: RecordCharge calls that arrive while `maxInFlight`
 * writes are running wait in a queue, and the next write takes
 * all of them (up to MAX_BATCH) together, with one multi-row insert and
 * pre-aggregated rollup upserts in key order. A call is answered only after
 * its transaction commits; when a transaction fails, the batch is split and
 * retried until only the calls that fail alone fail, each with its own
 * translated error (never another tenant's).
 */
export class ChargesService {
  private readonly queue: Pending[] = [];
  private inFlight = 0;
  /**
   * Declared dimensions' values known to be admitted on their day (committed
   * in dimension_values, which never removes one): a charge whose values are
   * all here skips the admission. Added only after a commit; emptied when it
   * grows past MAX_KNOWN_VALUES.
   */
  private readonly knownValues = new Set<string>();

  constructor(
    private readonly db: Db,
    private readonly pricing: PricingService,
    private readonly clock: () => Date = () => new Date(),
    private readonly maxInFlight = 2,
    /** Told about every write transaction (metrics); `refused`: charges refused by a dimension's limit of values per day. */
    private readonly onBatch: (b: { charges: number; priced: number; unpriced: number; refused?: number; seconds: number; ok: boolean }) => void = () => undefined,
    /** Prices, markups and account settings of the write path (shared with CheckLimits in a server). */
    private readonly cache = new SettingsCache(),
  ) {
    this.batchCalls = new Slots(maxInFlight);
  }

  /** `apiKeyId`: the API key that records ('' for the operator or with authentication off), stored on the charge. */
  async recordCharge(raw: RecordChargeRequestInput, apiKeyId = ''): Promise<RecordChargeResult> {
    const input = validateRecordCharge(raw, this.clock(), apiKeyId);
    const result = await new Promise<BatchItemResult>((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      this.drain();
    });
    if (result instanceof DomainError) throw result;
    return result;
  }

  /** A batch of up to MAX_BATCH charges: invalid ones fail alone; the valid ones are written in one transaction. */
  async recordCharges(raws: RecordChargeRequestInput[], apiKeyId = ''): Promise<BatchItemResult[]> {
    const now = this.clock();
    return this.writeValid(raws.map((raw) => orDomainError(() => validateRecordCharge(raw, now, apiKeyId))));
  }

  /**
   * ImportCharges (the operator's migration from the Django models): a batch as recordCharges
   * writes it, through the same transaction and ledger, except that a charge with a kept cost is
   * stored with that cost (price origin 'imported') instead of being priced.
   */
  async importCharges(raws: ImportedChargeInput[]): Promise<BatchItemResult[]> {
    const now = this.clock();
    const kept = new Map<string, KeptPricing>();
    const validated = raws.map((raw) =>
      orDomainError(() => {
        const { input, kept: cost } = validateImportedCharge(raw, now);
        // The first charge of a key decides (the others of the batch are its replays or conflicts).
        if (cost && !kept.has(chargeKey(input))) kept.set(chargeKey(input), cost);
        return input;
      }),
    );
    return this.writeValid(validated, kept);
  }

  /** Writes the valid charges of a batch in one transaction; the invalid ones keep their own error, in place. */
  private async writeValid(validated: Array<ChargeInput | DomainError>, kept?: ReadonlyMap<string, KeptPricing>): Promise<BatchItemResult[]> {
    const valid = validated.filter((v): v is ChargeInput => !(v instanceof DomainError));
    const written = valid.length ? await this.batchCalls.run(() => this.write(valid, kept)) : [];
    let next = 0;
    return validated.map((v) => (v instanceof DomainError ? v : written[next++]));
  }

  /**
   * RecordCharges and ImportCharges calls write at most maxInFlight batches at once (each up to
   * MAX_BATCH charges); the others wait their turn, so many concurrent batch calls do not all
   * hold their charges' intermediate objects at once (the server's memory) and share the pool.
   */
  private readonly batchCalls: Slots;

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
   * Writes charges atomically: in one statement when they are all new and
   * their decision reads nothing under lock (inOneStatement), otherwise in one
   * transaction (inOneTransaction), which locks the reservations they settle
   * (in id order), prices them (from the settings cache; two reads on a
   * miss), inserts the new keys in (account, key) order (so concurrent
   * batches cannot deadlock) checking the settings epoch, answers the others
   * as replays or conflicts, and applies the ledger's entries of the new
   * charges and the holds they settle (one statement; docs/architecture.md).
   * Several charges of one batch with the same key are answered as the first
   * one and its replays.
   */
  private async write(inputs: ChargeInput[], kept?: ReadonlyMap<string, KeptPricing>): Promise<BatchItemResult[]> {
    const started = process.hrtime.bigint();
    let inserted: ChargeRecord[] = [];
    let refused = 0;
    const report = (ok: boolean) =>
      this.onBatch({
        charges: inputs.length,
        priced: inserted.filter((c) => c.pricingStatus === 'priced').length,
        unpriced: inserted.filter((c) => c.pricingStatus === 'unpriced').length,
        refused,
        seconds: Number(process.hrtime.bigint() - started) / 1e9,
        ok,
      });
    try {
      const results = await this.transact(inputs, (stored) => (inserted = stored), kept);
      // Committed: the values of the new charges are admitted for good.
      if (this.knownValues.size > MAX_KNOWN_VALUES) this.knownValues.clear();
      for (const c of inserted) for (const [k, v] of Object.entries(c.dimensions ?? {})) this.knownValues.add(dimensionValueId(c.accountId, c.usageDate, k, v));
      refused = results.filter((r) => r instanceof DimensionValuesExhaustedError).length;
      report(true);
      return results;
    } catch (err) {
      inserted = [];
      report(false);
      throw err;
    }
  }

  private transact(inputs: ChargeInput[], onInserted: (c: ChargeRecord[]) => void, kept?: ReadonlyMap<string, KeptPricing>): Promise<BatchItemResult[]> {
    return this.cache.retrying(async (view) => {
      const done = !onCitus(this.db) && !inputs.some((c) => c.reservationId) ? await this.inOneStatement(inputs, onInserted, view, kept) : undefined;
      return done ?? this.inOneTransaction(inputs, onInserted, view, kept);
    });
  }

  /**
   * Charges that are all new, in one statement without a transaction (ledger.repo.ts,
   * recordNewCharges): their entries are decided before the insert. Only when the decision
   * needs nothing read under lock: no reservation to settle, no credits, no dimension values
   * to admit, no soft limit or alert rule to measure on the counters after the write. When a
   * key was already used the statement writes nothing: the used keys are looked up and answered
   * from their stored charges (replays, or conflicts when the content differs), and the others
   * are written by the statement again (a key used between the two sends the batch to the
   * transaction). Undefined (nothing written) when the transaction must record them.
   */
  private async inOneStatement(inputs: ChargeInput[], onInserted: (c: ChargeRecord[]) => void, view: SettingsView, kept?: ReadonlyMap<string, KeptPricing>): Promise<BatchItemResult[] | undefined> {
    const distinct = distinctByKey(inputs);
    const accounts = [...new Set(distinct.map((c) => c.accountId))];
    const settings = await view.settings(this.db, accounts);
    if (accounts.some((a) => settings.get(a)?.credits)) return undefined;
    const charges = await this.chargesOf(this.db, distinct, settings, new Map(), view, kept);
    const wanted = dimensionValuesWanted(charges, (a) => settings.get(a)?.maxValuesPerDay ?? DEFAULT_MAX_VALUES_PER_DAY, (id) => this.knownValues.has(id));
    if (wanted.length > 0) return undefined;
    const decide = (list: ChargeRecord[]) => entriesOf(list.map((charge): LedgerChange => ({ kind: 'charge_recorded', charge })));
    const entries = decide(charges);
    if (eventsAfterWrite(settings.values(), entries) || hasAlerts(entries.events)) return undefined;
    const stored = new Map<string, { charge: ChargeRecord; fresh: boolean }>();
    let toWrite = charges;
    /** Looks up the keys of toWrite already used (replays, or conflicts) and leaves the others; false when none was. */
    const setUsedAside = async (): Promise<boolean> => {
      const used = await read(() => findChargesByIdempotencyKeys(this.db, toWrite));
      for (const c of used) stored.set(chargeKey(c), { charge: c, fresh: false });
      toWrite = toWrite.filter((c) => !stored.has(chargeKey(c)));
      return used.length > 0;
    };
    // Batches of a workload with replays: look their used keys up first (two statements, not three).
    const batch = charges.length > 1;
    const lookFirst = batch && this.batchesWithUsedKeys > 0.25;
    let metUsedKeys = lookFirst && (await setUsedAside());
    let done = toWrite.length === 0;
    for (let attempt = 1; !done && attempt <= 2; attempt++) {
      if (await read(() => recordNewCharges(this.db, toWrite, view.epoch, toWrite === charges ? entries : decide(toWrite), toWrite[0].recordTime))) {
        onInserted(toWrite);
        for (const c of toWrite) stored.set(chargeKey(c), { charge: c, fresh: true });
        done = true;
      } else {
        // Keys already used by committed charges (the insert waits for a concurrent one to end):
        // they are replays or conflicts; the others are written again, in one statement.
        metUsedKeys = true;
        if (!(await setUsedAside())) break;
        done = toWrite.length === 0;
      }
    }
    if (batch) this.sawUsedKeys(metUsedKeys);
    // Otherwise another key was used meanwhile, or none could be found: the transaction sorts it out.
    return done ? answersOf(inputs, stored) : undefined;
  }

  private sawUsedKeys(used: boolean): void {
    this.batchesWithUsedKeys = 0.9 * this.batchesWithUsedKeys + (used ? 0.1 : 0);
  }

  /**
   * A moving average of how often a batch written in one statement met a used key (or was
   * looked up first): above a quarter, batches look their keys up before the statement.
   */
  private batchesWithUsedKeys = 0;

  /**
   * The charges as they will be stored: priced (from the settings cache; two reads on a miss),
   * unless ImportCharges kept their cost, dated in their account's time zone (or their
   * reservation's day), with their dimension values, in key order.
   */
  private async chargesOf(
    db: Db | Tx,
    inputs: ChargeInput[],
    settings: Map<string, AccountSettings>,
    reservations: Map<string, Reservation>,
    view: SettingsView,
    kept?: ReadonlyMap<string, KeptPricing>,
  ): Promise<ChargeRecord[]> {
    // A cost kept by ImportCharges replaces the price (only the others are priced).
    const toPrice = kept?.size ? inputs.filter((c) => !kept.has(chargeKey(c))) : inputs;
    const priced = await this.pricing.priceCharges(db, toPrice, view);
    let nextPriced = 0;
    const pricing = toPrice === inputs ? priced : inputs.map((c) => {
      const cost = kept?.get(chargeKey(c));
      return cost ? { ...cost, rateTime: this.clock() } : priced[nextPriced++];
    });
    const recordTime = this.clock();
    const charges: ChargeRecord[] = inputs.map((input, n) => {
      const account = settings.get(input.accountId);
      const timeZone = account?.timeZone ?? DEFAULT_TIME_ZONE;
      const usageDate = chargeDay(input, input.reservationId ? reservations.get(reservationKey(input.accountId, input.reservationId)) : undefined, timeZone);
      // Object.assign rather than a literal spreading the input and adding properties after it,
      // which V8 (Node 20) builds one property at a time on a slow path: about 20 µs a charge.
      return Object.assign({}, input, {
        chargeId: randomUUID(),
        totalTokens: totalTokens(input.tokens),
        usageDate,
        recordTime,
        currencyCode: CURRENCY_CODE,
        // Accounts with declared dimensions: the values and the local hour it is summed under in dimension_usage.
        dimensions: account?.dimensions ? dimensionValues(input.tags, account.dimensions) : null,
        rollupHour: account?.dimensions ? rollupHour(input.usageTime, usageDate, localDay(input.usageTime, timeZone), timeZone) : null,
      }, pricing[n]);
    });
    const keyed = charges.map((c): [string, ChargeRecord] => [chargeKey(c), c]);
    return keyed.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, c]) => c);
  }

  private inOneTransaction(inputs: ChargeInput[], onInserted: (c: ChargeRecord[]) => void, view: SettingsView, kept?: ReadonlyMap<string, KeptPricing>): Promise<BatchItemResult[]> {
    return inTransaction(this.db, async (tx) => {
      const distinct = distinctByKey(inputs);
      const { reservations, refused, claimed, contested } = await this.claimReservations(tx, distinct);
      const insertable = distinct.filter((c) => !refused.has(chargeKey(c)));
      // Time zones, soft limits, alert rules, prices and markups from the settings cache (read on a miss); the insert checks its epoch.
      const settings = await view.settings(tx, [...new Set(insertable.map((c) => c.accountId))]);
      const charges = await this.chargesOf(tx, insertable, settings, reservations, view, kept);
      const recordTime = charges[0]?.recordTime ?? this.clock();
      // Declared dimensions' values not known to be admitted on their day are admitted by the insert
      // statement itself (up to each account's limit of values per day); a charge carrying a value
      // past the limit is not inserted and is answered with its own error.
      const wanted = dimensionValuesWanted(charges, (a) => settings.get(a)?.maxValuesPerDay ?? DEFAULT_MAX_VALUES_PER_DAY, (id) => this.knownValues.has(id));
      const { inserted, refusals } = await insertChargesIfAbsent(tx, charges, view.epoch, wanted, recordTime);
      const overLimit = new Map<string, DimensionValuesExhaustedError>();
      for (const c of refusals.length ? charges : []) {
        const r = refusalOf(c, refusals);
        if (r) overLimit.set(chargeKey(c), new DimensionValuesExhaustedError(r));
      }
      // A claiming key committed by a concurrent call since it was looked up: another charge of
      // the batch was refused for a reservation nothing settles. Roll back; the retry sees the key.
      const insertedKeys = new Set(inserted.map(chargeKey));
      if ([...contested].some((id) => !insertedKeys.has(claimed.get(id) ?? '') && !overLimit.has(claimed.get(id) ?? ''))) throw new ConflictRetryError();
      onInserted(inserted);
      // Decide (the ledger) and apply (the store): the new charges, and the reservations they settle.
      const settled = inserted.flatMap((charge) => {
        const reservation = charge.reservationId ? reservations.get(reservationKey(charge.accountId, charge.reservationId)) : undefined;
        return reservation ? [{ charge, reservation }] : [];
      });
      // Credits (accounts with credits only, so others cost no round trip): lock their grants, end
      // the settled reservations' credit holds, then burn each new charge's billed cost.
      const creditHolds = settled.filter(({ reservation }) => reservation.status === 'held' && reservation.creditHolds?.length);
      const creditAccounts = [...new Set([...inserted.filter((c) => settings.get(c.accountId)?.credits).map((c) => c.accountId), ...creditHolds.map(({ charge }) => charge.accountId)])];
      const books = await Books.open(tx, creditAccounts, recordTime);
      for (const { charge, reservation } of creditHolds) books.get(charge.accountId)?.releaseHolds(reservation, recordTime, charge.chargeId);
      for (const charge of inserted) books.get(charge.accountId)?.burn(charge, new Dec(charge.costs?.totalCost ?? 0), recordTime);
      const entries = entriesOf([
        ...inserted.map((charge): LedgerChange => ({ kind: 'charge_recorded', charge })),
        ...settled.map(({ charge, reservation }): LedgerChange => ({ kind: 'hold_settled', reservation, charge, at: recordTime })),
        ...books.changes,
      ]);
      const credits = books.writes(entries, recordTime);
      // Soft limits and alert thresholds crossed, from the counters after the write (a second statement only when the accounts have either).
      await applyEntries(tx, entries, recordTime, eventsAfterWrite(settings.values(), entries, endedAt(recordTime, (a) => settings.get(a)?.timeZone)), credits);
      for (const { charge, reservation } of settled) reservations.set(reservationKey(charge.accountId, reservation.reservationId), { ...reservation, status: 'settled', finishTime: recordTime, chargeId: charge.chargeId });
      // Keys that existed (committed by an earlier or a concurrent call): replays or conflicts.
      const stored = new Map(inserted.map((c) => [chargeKey(c), { charge: c, fresh: true }]));
      const missing = distinct.filter((c) => !stored.has(chargeKey(c)));
      for (const c of await findChargesByIdempotencyKeys(tx, missing)) stored.set(chargeKey(c), { charge: c, fresh: false });
      return answersOf(inputs, stored, reservations, (key) => refused.get(key) ?? overLimit.get(key));
    });
  }

  /**
   * Locks the reservations the charges name (in id order) and decides, with
   * the domain's rule (settlementClaims), which charge of the batch may settle
   * each. The keys of a reservation named by several charges are looked up
   * first: a key already used writes nothing, so it claims nothing.
   */
  private async claimReservations(tx: Tx, charges: ChargeInput[]) {
    const naming = charges.filter((c) => c.reservationId);
    const locked = await lockReservations(tx, naming.map((c) => ({ accountId: c.accountId, reservationId: c.reservationId as string })));
    const reservations = new Map(locked.map((r) => [reservationKey(r.accountId, r.reservationId), r]));
    const rivals = contestedClaims(naming);
    const used = new Set((await findChargesByIdempotencyKeys(tx, rivals)).map(chargeKey));
    return { reservations, ...settlementClaims(naming, reservations, used) };
  }
}
