import { ChargeEvent, eventMatches, validateWatch } from '@metering/domain';
import { Db, read } from '../store/db';
import { lastSequence, readEvents } from '../store/events.repo';

/** Wakes the subscribers of an account when its events commit (from Postgres NOTIFY, any process). */
export class EventNotifier {
  private readonly waiters = new Map<string, Set<() => void>>();

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
   * events after it (the iteration ends only when aborted).
   */
  async open(raw: Parameters<typeof validateWatch>[0]): Promise<{ start: bigint; events(signal: AbortSignal): AsyncIterable<ChargeEvent> }> {
    const q = validateWatch(raw);
    const { db, notifier, pollMs } = this;
    const start = q.afterSequence ?? (await read(() => lastSequence(db, q.accountId)));
    return {
      start,
      async *events(signal: AbortSignal) {
        let cursor = start;
        while (!signal.aborted) {
          const batch = await read(() => readEvents(db, q.accountId, cursor, EVENT_BATCH));
          for (const event of batch) {
            cursor = event.sequence;
            if (eventMatches(event, q)) yield event;
          }
          if (batch.length < EVENT_BATCH) await notifier.wait(q.accountId, pollMs, signal);
        }
      },
    };
  }
}
