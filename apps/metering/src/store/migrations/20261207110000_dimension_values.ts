import type { Knex } from 'knex';

/**
 * Cardinality of declared dimensions (issue 20):
 * - account_dimensions.max_values_per_day: how many distinct values each
 *   declared tag key may take per local day (default 1,000; 1 to 10,000,
 *   libs/domain/src/dimensions.ts).
 * - dimension_values: per account, local day and declared tag key, the set
 *   of values admitted that day (an array, in admission order) and the
 *   limit it was last admitted under. The row serializes the charges that
 *   bring new values of that key on that day: the charge insert upserts it
 *   (ON CONFLICT DO UPDATE reads the newest version of the row after a lock
 *   wait), adding new values only while the array is shorter than the limit,
 *   so concurrent charges cannot overshoot. Distributed by account_id.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE account_dimensions ADD COLUMN max_values_per_day integer NOT NULL DEFAULT 1000 CHECK (max_values_per_day BETWEEN 1 AND 10000)`);
  await knex.raw(`CREATE TABLE dimension_values (
      account_id  text        NOT NULL,
      usage_date  date        NOT NULL,
      tag_key     text        NOT NULL,
      value_limit integer     NOT NULL CHECK (value_limit > 0),
      vals        text[]      NOT NULL,
      updated_at  timestamptz NOT NULL,
      PRIMARY KEY (account_id, usage_date, tag_key)
    )`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP TABLE dimension_values');
  await knex.raw('ALTER TABLE account_dimensions DROP COLUMN max_values_per_day');
}
