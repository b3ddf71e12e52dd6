import type { Knex } from 'knex';

/**
 * metering_all_new(inserted, sent): true when a statement inserted every charge it
 * sent, otherwise raises SQLSTATE MT002, which aborts the statement whole. New charges
 * are recorded in one statement without BEGIN/COMMIT (ledger.repo.ts, recordNewCharges):
 * their ledger entries are decided before the insert and applied by the same statement,
 * so a key that already exists (a replay, or a concurrent call with the same key) must
 * leave nothing behind; the caller then finds out which charges are new and records them.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`CREATE FUNCTION metering_all_new(inserted bigint, sent bigint) RETURNS boolean LANGUAGE plpgsql AS $$
      BEGIN
        IF inserted IS DISTINCT FROM sent THEN
          RAISE EXCEPTION 'an idempotency key of the statement was already used' USING ERRCODE = 'MT002';
        END IF;
        RETURN true;
      END $$`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP FUNCTION metering_all_new(bigint, bigint)');
}
