import type { Knex } from 'knex';

/**
 * Rolling windows (issue 20):
 * - limits.period 'rolling' with window_hours (1 to 744, whole hours; 0 for
 *   the calendar periods): the limit counts the usage of the last
 *   window_hours hours (the current hour included).
 * - hourly_counters: the usage (and open holds) of each scope per UTC hour,
 *   what rolling windows sum: the same scopes as usage_counters (the
 *   account, its users, API keys and declared tag values), moved by the same
 *   ledger entries in the same statement, after usage_counters. A charge
 *   counts in the hour of its usage_time, a hold in the hour it was placed.
 *   Keyed by account first (one shard per account on Citus).
 */
const UP = [
  `ALTER TABLE limits DROP CONSTRAINT limits_period_check`,
  `ALTER TABLE limits
     ADD CONSTRAINT limits_period_check CHECK (period IN ('day', 'month', 'rolling')),
     ADD COLUMN window_hours integer NOT NULL DEFAULT 0,
     ADD CONSTRAINT limits_window_hours CHECK ((period = 'rolling') = (window_hours BETWEEN 1 AND 744) AND (period = 'rolling' OR window_hours = 0))`,
  `CREATE TABLE hourly_counters (
      account_id        text        NOT NULL,
      hour_start        timestamptz NOT NULL,
      user_id           text        NOT NULL,
      scope             text        NOT NULL,
      message_count     bigint      NOT NULL DEFAULT 0,
      total_tokens      bigint      NOT NULL DEFAULT 0,
      total_cost        numeric     NOT NULL DEFAULT 0,
      reserved_messages bigint      NOT NULL DEFAULT 0,
      reserved_tokens   bigint      NOT NULL DEFAULT 0,
      reserved_cost     numeric     NOT NULL DEFAULT 0,
      updated_at        timestamptz NOT NULL,
      PRIMARY KEY (account_id, hour_start, user_id, scope),
      CHECK (scope = '' OR user_id = '')
    )`,
];

export async function up(knex: Knex): Promise<void> {
  for (const statement of UP) await knex.raw(statement);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP TABLE hourly_counters');
  await knex.raw(`DELETE FROM limits WHERE period = 'rolling'`);
  await knex.raw('ALTER TABLE limits DROP CONSTRAINT limits_window_hours, DROP COLUMN window_hours');
  await knex.raw('ALTER TABLE limits DROP CONSTRAINT limits_period_check');
  await knex.raw(`ALTER TABLE limits ADD CONSTRAINT limits_period_check CHECK (period IN ('day', 'month'))`);
}
