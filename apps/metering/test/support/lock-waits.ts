import type { Knex } from 'knex';
import type { Db } from '../../src/store/db';
import { onCitus } from './databases';

/**
 * Waits until at least `n` statements of the test's database wait for a lock: for tests that force
 * an interleaving (a third transaction holds a lock, the calls under test queue behind it). On
 * Citus the waits happen on the nodes holding the rows, which the coordinator's pg_stat_activity
 * does not show; citus_lock_waits gathers them from every node. Throws after 15 s (ample on a
 * loaded CI machine): a wait that never comes is what such a test looks for (the caller releases
 * its transaction in a finally, so that nothing stays blocked).
 */
export async function lockWaits(db: Db, n: number): Promise<void> {
  const sql = onCitus()
    ? 'SELECT count(*)::int AS n FROM citus_lock_waits'
    : `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`;
  for (const until = Date.now() + 15_000; Date.now() < until; await new Promise((r) => setTimeout(r, 20))) {
    const { rows } = await db.raw(sql);
    if (rows[0].n >= n) return;
  }
  throw new Error(`fewer than ${n} statements wait for a lock after 15 s`);
}

/**
 * Forces an order of two calls: `first` starts and must wait for a lock `holder` (a third
 * transaction) holds, then `second` starts and must wait too (lockWaits); then `holder` is rolled
 * back and both end. Their results, in that order. `holder` is rolled back and both calls settle
 * also when a wait does not come (that error is thrown then), so that nothing stays blocked.
 */
export async function queuedBehind<A, B>(db: Db, holder: Knex.Transaction, first: () => Promise<A>, second: () => Promise<B>): Promise<[A, B]> {
  const a = first();
  let b: Promise<B> | undefined;
  try {
    await lockWaits(db, 1);
    b = second();
    await lockWaits(db, 2);
  } finally {
    await holder.rollback();
    await Promise.allSettled([a, b]);
  }
  return Promise.all([a, b as Promise<B>]);
}
