import type { Db, Tx } from './db';

/** SQL of the settings epoch (migration 20261201120000_settings_epoch). No business rules. */

/** The settings epoch now (a reference row, the same for every account). */
export async function readSettingsEpoch(db: Db | Tx): Promise<string> {
  const { rows } = await db.raw('SELECT epoch::text AS epoch FROM settings_epoch');
  return (rows as Array<{ epoch: string }>)[0].epoch;
}

/** A SQL condition that raises SQLSTATE MT001 (SettingsChangedError) unless the epoch is still `?`. */
export const SETTINGS_ARE = 'metering_settings_are(?::bigint)';
