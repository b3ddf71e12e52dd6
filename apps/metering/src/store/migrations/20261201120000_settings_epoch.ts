import type { Knex } from 'knex';

/**
 * The settings epoch: one counter that every change to what the write path
 * reads of settings (operator prices, markups, accounts' time zones, limits)
 * moves, in the changing transaction, by statement triggers, whoever makes
 * the change (any replica, a migration, SQL by hand). Each server process
 * caches prices, markups and account settings with the epoch it read them
 * at; a write statement checks the epoch with metering_settings_are(epoch),
 * which raises SQLSTATE MT001 when it moved, and the process drops its cache
 * and retries. A change racing a charge is therefore either seen by it or
 * ordered after it, as without a cache.
 */
const TABLES = ['prices', 'markups', 'accounts', 'limits'];

export async function up(knex: Knex): Promise<void> {
  // One statement per call: the embedded database prepares each.
  await knex.raw(`CREATE TABLE settings_epoch (
      id    boolean PRIMARY KEY DEFAULT true CHECK (id),
      epoch bigint  NOT NULL
    )`);
  await knex.raw('INSERT INTO settings_epoch (id, epoch) VALUES (true, 1)');
  await knex.raw(`CREATE FUNCTION metering_bump_settings_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN UPDATE settings_epoch SET epoch = epoch + 1; RETURN NULL; END $$`);
  await knex.raw(`CREATE FUNCTION metering_settings_are(expected bigint) RETURNS boolean LANGUAGE plpgsql STABLE AS $$
      BEGIN
        IF (SELECT epoch FROM settings_epoch) IS DISTINCT FROM expected THEN
          RAISE EXCEPTION 'settings changed since they were cached' USING ERRCODE = 'MT001';
        END IF;
        RETURN true;
      END $$`);
  for (const t of TABLES) {
    await knex.raw(`CREATE TRIGGER ${t}_settings_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${t} FOR EACH STATEMENT EXECUTE FUNCTION metering_bump_settings_epoch()`);
  }
}

export async function down(knex: Knex): Promise<void> {
  for (const t of TABLES) await knex.raw(`DROP TRIGGER ${t}_settings_epoch ON ${t}`);
  await knex.raw('DROP FUNCTION metering_settings_are(bigint)');
  await knex.raw('DROP FUNCTION metering_bump_settings_epoch()');
  await knex.raw('DROP TABLE settings_epoch');
}
