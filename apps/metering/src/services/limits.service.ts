import {
  asSeen,
  CallAmounts,
  counterKeysOf,
  CounterState,
  entriesOf,
  withDeltas,
  canonicalJson,
  CheckLimitsRequestInput,
  DailyLimits,
  DEFAULT_TIME_ZONE,
  encodeLimitPageToken,
  evaluateLimits,
  Limit,
  LimitCheck,
  LimitDecision,
  LimitKeyInput,
  LimitPeriod,
  localDay,
  monthStart,
  neighbourDays,
  PeriodUsage,
  periodStartOf,
  QuotaExceededError,
  Reservation,
  ScopeInput,
  SetLimitsRequestInput,
  UnpricedEstimateError,
  UsageCounter,
  validateCheckLimits,
  validateLimitKey,
  validateListLimits,
  validatePutLimit,
  validateScope,
  validateSetLimits,
  ZERO_USAGE,
  IdempotencyConflictError,
  ConflictRetryError,
  limitStatus,
  NO_CALL,
  balanceMessage,
  balanceOf,
  BalanceInsufficientError,
  creditAllows,
  CreditPolicy,
  dimensionValues,
  extraScopesOf,
  parseScope,
  scopesOfReservation,
  Violations,
  hoursWithDeltas,
  ScopedHour,
  hourKeysOf,
  hoursKeptFrom,
  LimitSpan,
  MAX_WINDOW_HOURS,
  windowStartOf,
  windowUsage,
} from '@metering/domain';
import { Dec } from '@metering/pricing';
import { totalTokens } from '@metering/pricing';
import { createHash, randomUUID } from 'node:crypto';
import { Db, inTransaction, read, Tx } from '../store/db';
import { declaredTagKeysForShare, deleteLimit, listLimits, putLimit, readDailyLimits, readLimitCheckState, readLimits, replaceDailyLimits } from '../store/limits.repo';
import { applyEntries, lockCounters, lockHourTracking, lockHours, readHours, trackHours, untrackHours } from '../store/ledger.repo';
import { findReservationByKey, insertReservation } from '../store/reservations.repo';
import { PricingService } from './pricing.service';
import { SettingsCache, SettingsView } from './settings-cache';
import { dueExpiries } from './reservations.service';
import { Books } from './credits.service';
import { CheckStateReads } from './check-state-reads';

export interface LimitCheckResult extends LimitDecision {
  date: string;
  timeZone: string;
  userUsage: UsageCounter;
  accountUsage: UsageCounter;
  reservation?: Reservation;
  replayed: boolean;
  /** For an account with credits: what the user may spend now (before this call's hold) and the call's expected cost. */
  credit?: { available: Dec; cost: Dec };
  /** Denied by rolling limits only: when enough usage will have aged out for the call to be allowed. */
  allowedAt?: Date;
}

/** A denial by rolling limits only: the latest moment one of them lets the call through (none if one never does). */
function allowedAtOf(result: LimitCheckResult): Date | undefined {
  if (result.allowed) return undefined;
  const denying = result.limits.filter((l) => l.exceeded && l.enforcement === 'hard');
  if (denying.length === 0 || denying.some((l) => l.period !== 'rolling' || !l.allowedAt)) return undefined;
  return new Date(Math.max(...denying.map((l) => l.allowedAt!.getTime())));
}

/** A limit with its current period's usage. */
export interface LimitUsage {
  limit: Limit;
  periodStart: string;
  used: string;
  reserved: string;
  remaining: string;
  exceeded: boolean;
}

/** Rolls back a reserving transaction that was denied, carrying the decision out. */
class Denied extends Error {
  constructor(readonly result: LimitCheckResult) {
    super('denied');
  }
}

/**
 * A decision against limits, then against the balance: when every hard limit
 * allows the call but the account's policy is deny and its available balance
 * cannot cover the call's cost, the call is denied with balance_insufficient.
 */
function withCredits(result: LimitCheckResult, policy: CreditPolicy, available: Dec, cost: Dec): LimitCheckResult {
  const credit = { available, cost };
  if (!result.allowed || creditAllows(policy, available, cost)) return { ...result, credit };
  return { ...result, credit, allowed: false, reason: 'balance_insufficient', message: balanceMessage(available, cost) };
}

/** The counters of a scope and period from the rows read, zero when absent; a rolling limit's window from the hours read. */
function usageFrom(rows: CounterState[], day: string, hours: ScopedHour[] = [], now = new Date()) {
  return (userId: string, period: LimitSpan, scope = '', limit?: Limit): PeriodUsage => {
    if (period === 'rolling') return windowUsage(hours.filter((h) => h.userId === userId && h.scope === scope), now, limit?.windowHours ?? 1);
    const periodStart = periodStartOf(period as LimitPeriod, day);
    const row = rows.find((r) => r.userId === userId && (r.scope ?? '') === scope && r.period === period && r.periodStart === periodStart);
    return { periodStart, used: row?.used ?? ZERO_USAGE, reserved: row?.reserved ?? ZERO_USAGE };
  };
}

/**
 * CheckLimits (plain, or reserving), and limit management: SetLimits and
 * GetLimits (the Django models' hard day limits), PutLimit, DeleteLimit, ListLimits.
 * Periods are the account's local days and months.
 */
export class LimitsService {
  constructor(
    private readonly db: Db,
    private readonly pricing: PricingService,
    private readonly clock: () => Date = () => new Date(),
    /** Prices, markups and account settings of the hot paths (shared with RecordCharge in a server). */
    private readonly cache = new SettingsCache(),
  ) {
    this.checkReads = new CheckStateReads(db);
  }

  /** The plain checks' reads, batched per account (check-state-reads.ts). */
  private readonly checkReads: CheckStateReads;

  async setLimits(raw: SetLimitsRequestInput): Promise<DailyLimits> {
    const limits = validateSetLimits(raw);
    return inTransaction(this.db, async (tx) => {
      await replaceDailyLimits(tx, limits);
      return readDailyLimits(tx, limits.accountId, limits.userId);
    });
  }

  async getLimits(raw: ScopeInput): Promise<DailyLimits> {
    const scope = validateScope(raw);
    return read(() => readDailyLimits(this.db, scope.accountId, scope.userId, scope.scope));
  }

  /**
   * PutLimit. A tag value's limit needs its key declared as a dimension of
   * the account (only declared tags are counted): otherwise INVALID_ARGUMENT
   * on tag_key, and nothing is written. The declaration's row is share-locked
   * until commit, so it cannot be withdrawn meanwhile.
   */
  async putLimit(raw: LimitKeyInput & { amount: string }): Promise<Limit> {
    const limit = validatePutLimit(raw);
    return inTransaction(this.db, async (tx) => {
      // Rolling windows sum usage hours, kept only for accounts that have one: the first is filled from the charges (DeleteLimit of the last unlists the account).
      if (limit.period === 'rolling') {
        const now = this.clock();
        await trackHours(tx, limit.accountId, hoursKeptFrom(now), now);
      }
      const { tagKey } = parseScope(limit.scope);
      if (tagKey !== undefined && !(await declaredTagKeysForShare(tx, limit.accountId)).includes(tagKey)) {
        const v = new Violations();
        v.add('tag_key', `"${tagKey}" is not a declared dimension of account "${limit.accountId}": declare it with SetDimensions first (only declared tags are counted)`);
        v.done();
      }
      return putLimit(tx, limit);
    });
  }

  /** DeleteLimit. The account's last rolling limit deleted, its usage hours are no longer kept (untrackHours). */
  async deleteLimit(raw: LimitKeyInput): Promise<boolean> {
    const key = validateLimitKey(raw);
    return inTransaction(this.db, async (tx) => {
      const listed = key.period === 'rolling' && (await lockHourTracking(tx, key.accountId, 'UPDATE'));
      const deleted = await deleteLimit(tx, key);
      if (deleted && listed) await untrackHours(tx, key.accountId);
      return deleted;
    });
  }

  async listLimits(raw: { accountId: string; userId: string; pageSize: number; pageToken: string }): Promise<{ limits: LimitUsage[]; nextPageToken: string; timeZone: string }> {
    const q = validateListLimits(raw);
    return read(async () => {
      const page = await listLimits(this.db, q);
      const more = page.length > q.pageSize;
      const limits = page.slice(0, q.pageSize);
      const now = this.clock();
      const candidates = this.candidateStarts(now);
      // Counters of every scope on the page, in one read with the query CheckLimits uses.
      const users = [...new Set(limits.map((l) => l.userId).filter((u) => u !== ''))];
      const scopes = [...new Set(limits.flatMap((l) => (l.scope ? [l.scope] : [])))];
      const state = await readLimitCheckState(this.db, q.accountId, users, candidates, scopes, windowStartOf(now, MAX_WINDOW_HOURS));
      const timeZone = state.timeZone ?? DEFAULT_TIME_ZONE;
      const usage = usageFrom(state.counters, localDay(now, timeZone), state.hours, now);
      return {
        timeZone,
        nextPageToken: more ? encodeLimitPageToken(q, limits[limits.length - 1]) : '',
        limits: limits.map((limit) => {
          const s = limitStatus(limit, usage(limit.userId, limit.period, limit.scope, limit));
          return { limit, periodStart: s.periodStart, used: s.used, reserved: s.reserved, remaining: s.remaining, exceeded: s.exceeded };
        }),
      };
    });
  }

  /** `apiKeyId`: the API key that calls ('' for the operator or with authentication off). */
  async checkLimits(raw: CheckLimitsRequestInput, apiKeyId = ''): Promise<LimitCheckResult> {
    const check = validateCheckLimits(raw, apiKeyId);
    const result = check.reserve ? await this.reserve(check, check.reserve) : await this.check(check);
    if (!result.allowed && check.denyAsError) {
      if (result.reason === 'balance_insufficient' && result.credit) throw new BalanceInsufficientError(result.message, result.credit.available, result.credit.cost);
      throw QuotaExceededError.of(check.accountId, check.userId, result.message, result.limits);
    }
    return result;
  }

  /** The days around UTC's today and their months: the account's local today is one of them. */
  private candidateStarts(now: Date): readonly string[] {
    const today = localDay(now, DEFAULT_TIME_ZONE);
    if (this.starts.today !== today) {
      const days = neighbourDays(today);
      this.starts = { today, starts: [...new Set([...days, ...days.map(monthStart)])] };
    }
    return this.starts.starts;
  }

  /** The last candidateStarts, for its UTC day (made once a day, not on every call). */
  private starts: { today: string; starts: readonly string[] } = { today: '', starts: [] };

  /**
   * A plain check: one round trip of primary-key reads. An estimate is priced
   * from the settings cache (the pricing reads only on a miss), checked
   * against the settings epoch the same read returns.
   */
  private async check(check: LimitCheck): Promise<LimitCheckResult> {
    const now = this.clock();
    for (let attempt = 1; ; attempt++) {
      const view = this.cache.view();
      const call = await read(() => this.callAmounts(this.db, check, now, view));
      // Every tag of the call is read; the limits of the declared ones apply (only those are counted).
      const state = await this.checkReads.read(check.accountId, check.userId, this.candidateStarts(now), extraScopesOf(check.apiKeyId, check.tags), windowStartOf(now, MAX_WINDOW_HOURS));
      if (check.estimate && state.settingsEpoch !== view.epoch && attempt < 3) {
        this.cache.clear();
        continue;
      }
      const timeZone = state.timeZone ?? DEFAULT_TIME_ZONE;
      const scopes = extraScopesOf(check.apiKeyId, dimensionValues(check.tags, state.dimensions));
      const result = this.decide(check, state.limits, state.counters, timeZone, localDay(now, timeZone), call, scopes, state.hours, now);
      return state.credits ? withCredits(result, state.credits.policy, balanceOf(check.accountId, state.credits.grants, now, check.userId).available, call.cost) : result;
    }
  }

  /** `scopes`: the call's API key and declared tag values (extraScopesOf), whose limits apply too. */
  private decide(check: LimitCheck, limits: Limit[], counters: CounterState[], timeZone: string, day: string, call: CallAmounts, scopes: string[], hours: ScopedHour[] = [], now = this.clock()): LimitCheckResult {
    const usage = usageFrom(counters, day, hours, now);
    const decision = evaluateLimits({ userId: check.userId, limits, usage, call, scopes });
    const result: LimitCheckResult = { ...decision, date: day, timeZone, userUsage: usage(check.userId, 'day').used, accountUsage: usage('', 'day').used, replayed: false };
    const allowedAt = allowedAtOf(result);
    return allowedAt ? { ...result, allowedAt } : result;
  }

  /** The tokens and cost a call is expected to add: as given, or priced from the estimate. */
  private async callAmounts(db: Db | Tx, check: LimitCheck, now: Date, view: SettingsView): Promise<CallAmounts> {
    const e = check.estimate;
    if (!e) return { tokens: check.additionalTokens, cost: check.additionalCost };
    const [priced] = await this.pricing.estimates(db, [{ accountId: check.accountId, provider: e.provider, model: e.model, at: now, chargeType: e.chargeType, tokens: e.tokens, toolCalls: e.toolCalls, serviceTier: e.serviceTier, callCount: e.callCount }], view);
    if (!priced.cost) throw new UnpricedEstimateError(e.provider, e.model, priced.unpriced);
    return { tokens: check.additionalTokens > 0n ? check.additionalTokens : BigInt(totalTokens(e.tokens)), cost: priced.cost.totalCost };
  }

  /**
   * A reserving check, in one transaction: insert the reservation (its
   * idempotency key decides replays), lock this account's expired holds and
   * the day and month counters of the user and the account in key order
   * (concurrent reservations and charges queue here), decide against every
   * limit with holds counted as spent and the expired ones gone, and either
   * apply the expiries and the new hold (the ledger) or roll back.
   */
  private async reserve(check: LimitCheck, { idempotencyKey, holdSeconds }: { idempotencyKey: string; holdSeconds: number }): Promise<LimitCheckResult> {
    const now = this.clock();
    const requestHash = createHash('sha256')
      // Tags only when there are any, so the fingerprint of a request without tags is unchanged.
      .update(canonicalJson({ u: check.userId, t: check.additionalTokens.toString(), c: check.additionalCost.toFixed(), e: check.estimate ?? null, h: holdSeconds, ...(Object.keys(check.tags).length ? { g: check.tags } : {}) }))
      .digest('base64url');
    try {
      return await this.cache.retrying((view) => inTransaction(this.db, async (tx) => {
        // The time zone and the estimate's price from the settings cache; the insert checks its epoch.
        const settings = (await view.settings(tx, [check.accountId])).get(check.accountId) ?? { softLimits: [] };
        const timeZone = settings.timeZone ?? DEFAULT_TIME_ZONE;
        const day = localDay(now, timeZone);
        const call = await this.callAmounts(tx, check, now, view);
        const reservation: Reservation = {
          accountId: check.accountId,
          reservationId: randomUUID(),
          idempotencyKey,
          userId: check.userId,
          status: 'held',
          heldMessages: 1n,
          heldTokens: call.tokens,
          heldCost: call.cost,
          periodDay: day,
          requestHash,
          createTime: now,
          expireTime: new Date(now.getTime() + holdSeconds * 1000),
          tags: check.tags,
          apiKeyId: check.apiKeyId,
          // The declared tags' values it holds on (as a charge records the values it was summed under).
          dimensions: settings.dimensions ? dimensionValues(check.tags, settings.dimensions) : null,
        };
        const scopes = scopesOfReservation(reservation);
        if (!(await insertReservation(tx, reservation, view.epoch))) return this.replay(tx, check, idempotencyKey, requestHash, timeZone, now);
        // The limits before any lock (the insert checked the settings epoch, which limits move),
        // so that the rows locked below are held for as few round trips as possible.
        const limits = await readLimits(tx, check.accountId, ['', check.userId], ['', ...scopes]);
        // This account's expired holds are freed first, so the decision sees them gone.
        // Every counter the transaction will write is locked in one statement, in key order.
        const expired = await dueExpiries(tx, now, check.accountId);
        const freed = entriesOf(expired).counters;
        // An account with credits: its grants are locked next (the lock order: before the
        // counters), the expired holds' credit parts end, and the call holds against the balance.
        const hasCredits = settings.credits || expired.some((c) => c.kind === 'hold_expired' && c.reservation.creditHolds?.length);
        const books = hasCredits ? await Books.open(tx, [check.accountId], now) : undefined;
        const book = books?.get(check.accountId);
        for (const c of expired) if (book && c.kind === 'hold_expired' && c.reservation.creditHolds?.length) book.releaseHolds(c.reservation, now);
        const locked = await lockCounters(tx, [...freed.map((d) => d.key), ...counterKeysOf(check.accountId, check.userId, day, scopes)], now);
        // Rolling limits: the current hour of every scope (and the hours the expired holds free) locked
        // after the counters, then the windows read in a statement of their own (it sees what it waited for).
        let hours: ScopedHour[] = [];
        const rolling = limits.filter((l) => l.period === 'rolling');
        if (rolling.length) {
          const freedHours = entriesOf(expired).hours;
          await lockHours(tx, [...freedHours.map((d) => d.key), ...hourKeysOf(check.accountId, check.userId, now, scopes)], now);
          const longest = Math.max(...rolling.map((l) => l.windowHours ?? 1));
          hours = hoursWithDeltas(await readHours(tx, check.accountId, [check.userId], scopes, windowStartOf(now, longest)), freedHours);
        }
        let result = this.decide(check, limits, withDeltas(locked, freed), timeZone, day, call, scopes, hours, now);
        if (book) result = withCredits(result, book.account.policy, book.available(now, check.userId), call.cost);
        if (!result.allowed) throw new Denied(result);
        // Under allow_overage a call may hold less than its cost (what is available).
        if (book) reservation.creditHolds = book.hold(reservation, Dec.min(call.cost, book.available(now, check.userId)), now);
        const entries = entriesOf([...expired, { kind: 'hold_placed', reservation }, ...(books?.changes ?? [])]);
        await applyEntries(tx, entries, now, undefined, books?.writes(entries, now));
        if (reservation.creditHolds?.length === 0) delete reservation.creditHolds;
        return { ...result, reservation };
      }));
    } catch (err) {
      if (err instanceof Denied) return err.result;
      throw err;
    }
  }

  /** A reserving check whose key was used: the original reservation, if the request is the same. */
  private async replay(tx: Tx, check: LimitCheck, key: string, requestHash: string, timeZone: string, now: Date): Promise<LimitCheckResult> {
    // The key's transaction committed before our insert skipped it, so the row is visible.
    const original = await findReservationByKey(tx, check.accountId, key);
    if (!original) throw new ConflictRetryError();
    if (original.requestHash !== requestHash) throw new IdempotencyConflictError(key, ['reservation request'], 'a reservation');
    const scopes = scopesOfReservation(original);
    const state = await readLimitCheckState(tx, check.accountId, [check.userId], this.candidateStarts(now), scopes, windowStartOf(now, MAX_WINDOW_HOURS));
    const { allowedAt: _none, ...result } = this.decide(check, state.limits, state.counters, timeZone, localDay(now, timeZone), NO_CALL, scopes, state.hours, now);
    return { ...result, allowed: true, reason: result.limits.length ? 'within_limits' : 'no_limits_set', message: 'Reserved (replay of the original reservation)', reservation: asSeen(original, now), replayed: true };
  }
}
