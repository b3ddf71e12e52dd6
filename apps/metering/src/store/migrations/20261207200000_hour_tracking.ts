import type { Knex } from 'knex';

/**
 * Usage hours only for the accounts that need them. hourly_counters exists for rolling windows
 * (migration 20261207113000_rolling_windows), and only an account with a rolling limit reads it,
 * yet every charge wrote its hour rows (the account's, the user's and one per API key and tag
 * value): about a third of a charge's row writes, for most accounts never read.
 *
 * hour_tracking: the accounts whose hours are kept, each with `since`, the first hour from which
 * its hourly_counters rows equal its charges and open holds. The first rolling limit of an
 * account inserts its row and fills its hours from its charges and holds (ledger.repo.ts,
 * trackHours); every write of hourly_counters keeps only the rows of accounts listed here.
 * A reference table on Citus (small, one row per account that ever had a rolling limit).
 *
 * Existing data: the accounts that have a rolling limit keep their hours, from their earliest
 * hour row on (hours were written since the rolling windows migration); the other accounts' hour
 * rows are deleted (nothing reads them, and they would go stale).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`CREATE TABLE hour_tracking (
      account_id text        NOT NULL,
      since      timestamptz NOT NULL,
      created_at timestamptz NOT NULL,
      PRIMARY KEY (account_id)
    )`);
  await knex.raw(`INSERT INTO hour_tracking (account_id, since, created_at)
      SELECT l.account_id, coalesce((SELECT min(h.hour_start) FROM hourly_counters h WHERE h.account_id = l.account_id), date_trunc('hour', now(), 'UTC')), now()
        FROM (SELECT DISTINCT account_id FROM limits WHERE period = 'rolling') l`);
  await knex.raw('DELETE FROM hourly_counters h WHERE NOT EXISTS (SELECT 1 FROM hour_tracking t WHERE t.account_id = h.account_id)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP TABLE hour_tracking');
}
