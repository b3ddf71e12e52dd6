import { ChargeEvent, CursorAheadError, eventMatches, EventsPrunedError, validateWatch } from '@metering/domain';
import { Db, read } from '../store/db';
import { deleteOldestEvents, eventAccounts, firstSequence, lastSequence, readEvents } from '../store/events.repo';

/** Stops a LISTEN. */
type Stop = () => Promise<void>;

/** Wakes the subscribers of an account when its events commit (from Postgres NOTIFY, any process). */
export class EventNotifier {
  private readonly waiters = new Map<string, Set<() => void>>();
  private subscribers = 0;
  private closed = false;
  /** The LISTEN under way or started (its stop), while this process has subscribers. */
  private listening: Promise<Stop | undefined> = Promise.resolve(undefined);

  /**
   * `listen` starts a LISTEN that wakes accounts (resolving once notifications flow, or once its first try
   * failed) and returns its stop. The notifier listens only while this process has a subscriber: every write
   * NOTIFYs, waking each listening connection and its Postgres backend (that backend alone cost 6% of Postgres'
   * CPU per lone RecordCharge, docs/benchmarks.md), for nothing on a server nobody watches, and every replica
   * held a session for it. Without `listen`, subscribers only poll.
   */
  constructor(private readonly listen?: (wake: (accountId: string) => void) => Promise<Stop>) {}

  /** A subscriber starts: its wakes flow once this resolves (it reads what committed before). Pair with unsubscribe(). */
  async subscribe(): Promise<void> {
    if (this.subscribers++ === 0 && !this.closed && this.listen) this.listening = this.listen((accountId) => this.wake(accountId)).catch(() => undefined);
    await this.listening;
  }

  /** A subscriber ended; the last one stops the LISTEN (stopped when this resolves). */
  async unsubscribe(): Promise<void> {
    if (--this.subscribers === 0) await this.stop();
  }

  /** Stops listening for good (server shutdown). */
  async close(): Promise<void> {
    this.closed = true;
    await this.stop();
  }

  /** Stops the LISTEN once it has started; a subscriber arriving meanwhile starts another at once, not after it. */
  private async stop(): Promise<void> {
    const started = this.listening;
    this.listening = Promise.resolve(undefined);
    await (await started)?.();
  }

  wake(accountId: string): void {
    const set = this.waiters.get(accountId);
    this.waiters.delete(accountId);
    for (const resolve of set ?? []) resolve();
  }

  /** Resolves on the next wake of the account, after `ms` at the latest, or when aborted. */
  wait(accountId: string, ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const set = this.waiters.get(accountId) ?? new Set();
      this.waiters.set(accountId, set);
      const done = () => {
        clearTimeout(timer);
        set.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
      signal.addEventListener('abort', done);
    });
  }
}

export const EVENT_BATCH = 500;

/**
 * WatchCharges: an account's events from the outbox, in sequence (= commit)
 * order. Each subscriber reads the database at its own pace from its own
 * cursor, so a slow one holds back neither writers nor other subscribers. It
 * waits for NOTIFY between reads, and reads anyway every `pollMs` (so a lost
 * notification delays an event, never loses it).
 */
export class EventsService {
  constructor(
    private readonly db: Db,
    private readonly notifier: EventNotifier,
    private readonly pollMs = 1000,
  ) {}

  /**
   * Validates the request and finds where the stream starts (after_sequence,
   * or the account's last sequence now); returns that cursor and the matching
   * events after it (the iteration ends only when aborted). Sequences have no
   * gaps, so a gap after the cursor means retention deleted those events: the
   * stream refuses (OUT_OF_RANGE) rather than skip them; so it does a cursor
   * past the last event, which would skip the events up to it.
   */
  async open(raw: Parameters<typeof validateWatch>[0]): Promise<{ start: bigint; events(signal: AbortSignal): AsyncIterable<ChargeEvent> }> {
    const q = validateWatch(raw);
    const { db, notifier, pollMs } = this;
    const last = await read(() => lastSequence(db, q.accountId));
    const start = q.afterSequence ?? last;
    if (start > last) throw new CursorAheadError(start, last);
    if (start < last) {
      const first = await read(() => firstSequence(db, q.accountId));
      if (first === undefined || first > start + 1n) throw new EventsPrunedError(start, first ?? last + 1n);
    }
    return {
      start,
      async *events(signal: AbortSignal) {
        let cursor = start;
        // Listening before the first read: what commits after it wakes this subscriber, what committed before it reads.
        await notifier.subscribe();
        try {
          while (!signal.aborted) {
            const batch = await read(() => readEvents(db, q.accountId, cursor, EVENT_BATCH));
            for (const event of batch) {
              // Any gap, first of a batch or not, is events deleted by retention: refused, never stepped over.
              if (event.sequence !== cursor + 1n) throw new EventsPrunedError(cursor, event.sequence);
              cursor = event.sequence;
              if (eventMatches(event, q)) yield event;
            }
            if (batch.length < EVENT_BATCH) await notifier.wait(q.accountId, pollMs, signal);
          }
        } finally {
          void notifier.unsubscribe();
        }
      },
    };
  }
}

/** Events deleted per statement by the retention sweep: each delete is a short transaction. */
export const PRUNE_BATCH = 10_000;

/**
 * Outbox retention: deletes each account's events older than `seconds`, from its
 * lowest sequence up to (not including) its oldest event still within the period,
 * in batches; returns how many. An old event above a newer one waits for it.
 */
export async function pruneEvents(db: Db, seconds: number): Promise<number> {
  let total = 0;
  for (const accountId of await eventAccounts(db)) {
    for (;;) {
      const n = await deleteOldestEvents(db, accountId, seconds, PRUNE_BATCH);
      total += n;
      if (n < PRUNE_BATCH) break;
    }
  }
  return total;
}
