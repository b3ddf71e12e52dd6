import type { Db, Tx } from './db';

/** SQL of the settings epoch (migration 20261201120000_settings_epoch). No business rules. */

/** The settings epoch now (a reference row, the same for every account). */
export async function readSettingsEpoch(db: Db | Tx): Promise<string> {
  const { rows } = await db.raw('SELECT epoch::text AS epoch FROM settings_epoch');
  return (rows as Array<{ epoch: string }>)[0].epoch;
}

/** A SQL condition that raises SQLSTATE MT001 (SettingsChangedError) unless the epoch is still `?`. */
export const SETTINGS_ARE = 'metering_settings_are(?::bigint)';

/**
 * Moves the settings epoch, in the transaction that changes a setting. On plain Postgres the
 * tables' statement triggers move it too (whoever writes, SQL by hand included; the epoch then
 * moves twice, which costs nothing); on Citus the distribution step drops those triggers (a
 * trigger on a shard cannot update the reference table settings_epoch), so this call is what
 * moves it there. Every repository function that changes prices, markups, accounts, limits,
 * alert rules or creates/removes a credit account calls it.
 */
export async function bumpSettingsEpoch(tx: Tx): Promise<void> {
  await tx.raw('UPDATE settings_epoch SET epoch = epoch + 1');
}
