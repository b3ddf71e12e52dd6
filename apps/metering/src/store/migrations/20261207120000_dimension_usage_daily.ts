import type { Knex } from 'knex';

/**
 * The day-level dimension rollup (issue 20): dimension_usage summed over the
 * hours of each local day, by the same keys but the hour. The ledger writes
 * it in the same apply statement, after dimension_usage. QueryUsage reads it
 * for day, month and whole-range granularities, so their cost follows the
 * number of distinct keys a day, not the charges: hourly rows alone grow
 * with the data (up to 24 per key and day) and made a 30-day query slower
 * the more an account records (docs/architecture.md, Dimensions). Filled
 * from dimension_usage for the days already summed.
 */
const SUMS = [
  'message_count', 'unpriced_message_count', 'prompt_tokens', 'completion_tokens', 'reasoning_tokens', 'cached_prompt_tokens', 'cache_write_tokens',
  'cache_write_1h_tokens', 'audio_prompt_tokens', 'cached_audio_prompt_tokens', 'image_prompt_tokens', 'cached_image_prompt_tokens',
  'audio_completion_tokens', 'image_completion_tokens', 'total_tokens', 'call_count',
];
const MONEY = ['provider_cost', 'prompt_cost', 'completion_cost', 'call_cost', 'total_cost'];
const KEY = ['account_id', 'usage_date', 'user_id', 'provider', 'model', 'charge_type', 'api_key_id', 'dims'];

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`CREATE TABLE dimension_usage_daily (
      account_id  text     NOT NULL,
      usage_date  date     NOT NULL,
      user_id     text     NOT NULL,
      provider    text     NOT NULL,
      model       text     NOT NULL,
      charge_type text     NOT NULL,
      api_key_id  text     NOT NULL,
      dims        jsonb    NOT NULL CHECK (jsonb_typeof(dims) = 'object'),
      ${SUMS.map((c) => `${c} bigint NOT NULL DEFAULT 0`).join(',\n      ')},
      ${MONEY.map((c) => `${c} numeric NOT NULL DEFAULT 0`).join(',\n      ')},
      updated_at  timestamptz NOT NULL,
      PRIMARY KEY (${KEY.join(', ')})
    )`);
  await knex.raw(`INSERT INTO dimension_usage_daily (${[...KEY, ...SUMS, ...MONEY, 'updated_at'].join(', ')})
    SELECT ${KEY.join(', ')}, ${[...SUMS, ...MONEY].map((c) => `sum(${c})`).join(', ')}, max(updated_at)
      FROM dimension_usage GROUP BY ${KEY.join(', ')}`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP TABLE dimension_usage_daily');
}
