import type { Knex } from 'knex';

/**
 * Declared dimensions and their rollups (issue 20):
 * - account_dimensions: the tag keys an account's usage is kept by (at most
 *   5, libs/domain/src/dimensions.ts). A change moves the settings epoch (a
 *   statement trigger, like limits), so the write path's cached view of an
 *   account's dimensions is exact across replicas.
 * - charges.dimensions / charges.rollup_hour: what a charge was summed under
 *   in dimension_usage (NULL: the account had no declared dimensions then),
 *   so that re-rating moves that same row whatever is declared later.
 * - dimension_usage: the sums of daily_usage, by local day and hour, user,
 *   provider, model, charge type, API key and the declared tags' values
 *   (a JSON object; {} when none), written by the ledger in the same
 *   statement as daily_usage, after it and before the counters.
 */
const SUMS = [
  'message_count', 'unpriced_message_count', 'prompt_tokens', 'completion_tokens', 'reasoning_tokens', 'cached_prompt_tokens', 'cache_write_tokens',
  'cache_write_1h_tokens', 'audio_prompt_tokens', 'cached_audio_prompt_tokens', 'image_prompt_tokens', 'cached_image_prompt_tokens',
  'audio_completion_tokens', 'image_completion_tokens', 'total_tokens', 'call_count',
];
const MONEY = ['provider_cost', 'prompt_cost', 'completion_cost', 'call_cost', 'total_cost'];

const UP = [
  `CREATE TABLE account_dimensions (
      account_id  text        PRIMARY KEY,
      tag_keys    text[]      NOT NULL,
      update_time timestamptz NOT NULL
    )`,
  `CREATE TRIGGER account_dimensions_settings_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON account_dimensions FOR EACH STATEMENT EXECUTE FUNCTION metering_bump_settings_epoch()`,
  `ALTER TABLE charges
      ADD COLUMN dimensions jsonb CHECK (dimensions IS NULL OR jsonb_typeof(dimensions) = 'object'),
      ADD COLUMN rollup_hour smallint CHECK (rollup_hour BETWEEN 0 AND 23)`,
  `CREATE TABLE dimension_usage (
      account_id  text     NOT NULL,
      usage_date  date     NOT NULL,
      hour        smallint NOT NULL CHECK (hour BETWEEN 0 AND 23),
      user_id     text     NOT NULL,
      provider    text     NOT NULL,
      model       text     NOT NULL,
      charge_type text     NOT NULL,
      api_key_id  text     NOT NULL,
      dims        jsonb    NOT NULL CHECK (jsonb_typeof(dims) = 'object'),
      ${SUMS.map((c) => `${c} bigint NOT NULL DEFAULT 0`).join(',\n      ')},
      ${MONEY.map((c) => `${c} numeric NOT NULL DEFAULT 0`).join(',\n      ')},
      updated_at  timestamptz NOT NULL,
      PRIMARY KEY (account_id, usage_date, hour, user_id, provider, model, charge_type, api_key_id, dims)
    )`,
];

export async function up(knex: Knex): Promise<void> {
  for (const statement of UP) await knex.raw(statement);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP TABLE dimension_usage');
  await knex.raw('ALTER TABLE charges DROP COLUMN dimensions, DROP COLUMN rollup_hour');
  await knex.raw('DROP TRIGGER account_dimensions_settings_epoch ON account_dimensions');
  await knex.raw('DROP TABLE account_dimensions');
}
