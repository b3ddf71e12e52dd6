import { UnavailableError } from '@metering/domain';
import { Db, read } from '../store/db';
import { readLimitCheckState } from '../store/limits.repo';

/** What a plain CheckLimits reads for one user (store/limits.repo.ts readLimitCheckState). */
export type CheckState = Awaited<ReturnType<typeof readLimitCheckState>>;

interface Waiter {
  userId: string;
  starts: readonly string[];
  /** The call's API key and tag scopes (libs/domain/src/limits.ts extraScopesOf). */
  scopes: readonly string[];
  /** The first hour of the longest rolling window. */
  hoursFrom: Date;
  resolve: (s: CheckState) => void;
  reject: (e: unknown) => void;
}

/** At most this many checks share one read (the statement's user array). */
const MAX_BATCH = 500;

/**
 * The plain CheckLimits reads of one process, batched per account: a check
 * whose account already has `perAccount` reads in flight waits, and the next
 * read of that account carries every check that waited, for all their users
 * (the statement takes lists of users and scopes already). Each check then gets only its
 * own user's, its own API key's and tags' and the account's rows (and hours from its own window start), which is what a read of its own returns
 * for them (the limits and counters of other users are dropped; the time zone,
 * settings epoch and credits are the account's).
 *
 * Exact, as one read per check: a check joins only a read sent after it
 * arrived, never one already running, so it sees everything committed before
 * it was called. Each read stays one statement of one account (`account_id`
 * equality: routable on Citus, docs/architecture.md Routing). At one check in
 * flight nothing waits and nothing changes; at 64 in flight on one account, the
 * per-statement costs (the socket write, the driver, knex) are paid once per
 * batch instead of once per call. When a batched read fails, each of its
 * checks is read again alone, so a check fails only with its own error.
 */
export class CheckStateReads {
  private readonly accounts = new Map<string, { waiting: Waiter[]; running: number }>();

  constructor(
    private readonly db: Db,
    private readonly perAccount = 2,
  ) {}

  read(accountId: string, userId: string, starts: readonly string[], scopes: readonly string[], hoursFrom: Date): Promise<CheckState> {
    return new Promise<CheckState>((resolve, reject) => {
      let account = this.accounts.get(accountId);
      if (!account) this.accounts.set(accountId, (account = { waiting: [], running: 0 }));
      account.waiting.push({ userId, starts, scopes, hoursFrom, resolve, reject });
      this.drain(accountId, account);
    });
  }

  private drain(accountId: string, account: { waiting: Waiter[]; running: number }): void {
    while (account.waiting.length > 0 && account.running < this.perAccount) {
      const batch = account.waiting.splice(0, MAX_BATCH);
      account.running++;
      void this.run(accountId, batch).finally(() => {
        account.running--;
        if (account.running === 0 && account.waiting.length === 0) this.accounts.delete(accountId);
        else this.drain(accountId, account);
      });
    }
  }

  private async run(accountId: string, batch: Waiter[]): Promise<void> {
    if (batch.length === 1) {
      const [w] = batch;
      await read(() => readLimitCheckState(this.db, accountId, [w.userId], [...w.starts], [...w.scopes], w.hoursFrom)).then(w.resolve, w.reject);
      return;
    }
    const users = [...new Set(batch.map((w) => w.userId))];
    const starts = [...new Set(batch.flatMap((w) => w.starts))];
    const scopes = [...new Set(batch.flatMap((w) => w.scopes))];
    const hoursFrom = new Date(Math.min(...batch.map((w) => w.hoursFrom.getTime())));
    let state: CheckState;
    try {
      state = await read(() => readLimitCheckState(this.db, accountId, users, starts, scopes, hoursFrom));
    } catch (err) {
      // An unreachable database fails them all (reading alone would not help); otherwise each
      // check is read alone, so that none fails with an error that is not its own.
      if (err instanceof UnavailableError) {
        for (const w of batch) w.reject(err);
        return;
      }
      await Promise.all(batch.map((w) => this.run(accountId, [w])));
      return;
    }
    for (const w of batch) {
      const mine = (r: { userId: string; scope?: string }) => (r.userId === '' || r.userId === w.userId) && (!r.scope || w.scopes.includes(r.scope));
      const hours = state.hours.filter((h) => mine(h) && h.hourStart.getTime() >= w.hoursFrom.getTime());
      w.resolve({ ...state, limits: state.limits.filter(mine), counters: state.counters.filter(mine), hours });
    }
  }
}
