import type { Knex } from 'knex';

/**
 * The initial schema. Every table's primary and unique keys lead with
 * account_id, so the data can be distributed by account (Citus) later; money
 * is NUMERIC (exact, unbounded scale), never float. `markups` is global
 * configuration (a reference table under Citus). One statement per entry:
 * the embedded database prepares each query and takes one command at a time.
 */
const SCHEMA = [
  `
    CREATE TABLE charges (
      account_id            text        NOT NULL,
      charge_id             uuid        NOT NULL,
      idempotency_key       text        NOT NULL,
      user_id               text        NOT NULL,
      session_key           text        NOT NULL DEFAULT '',
      provider              text        NOT NULL,
      model                 text        NOT NULL,
      charge_type           text        NOT NULL CHECK (charge_type IN ('completion', 'plugin', 'tool')),
      request_type          text        NOT NULL CHECK (request_type IN ('chat', 'summarization', 'embedding', 'tool_call', 'vision')),
      prompt_tokens         bigint      NOT NULL CHECK (prompt_tokens >= 0),
      completion_tokens     bigint      NOT NULL CHECK (completion_tokens >= 0),
      reasoning_tokens      bigint      NOT NULL CHECK (reasoning_tokens BETWEEN 0 AND completion_tokens),
      cached_prompt_tokens  bigint      NOT NULL CHECK (cached_prompt_tokens >= 0),
      cache_write_tokens    bigint      NOT NULL CHECK (cache_write_tokens >= 0 AND cached_prompt_tokens + cache_write_tokens <= prompt_tokens),
      total_tokens          bigint      NOT NULL CHECK (total_tokens = prompt_tokens + completion_tokens),
      reference             text        NOT NULL DEFAULT '',
      endpoint              text        NOT NULL DEFAULT '',
      response_time_ms      bigint      CHECK (response_time_ms >= 0),
      was_cached            boolean     NOT NULL DEFAULT false,
      had_error             boolean     NOT NULL DEFAULT false,
      error_message         text        NOT NULL DEFAULT '',
      metadata              jsonb       NOT NULL DEFAULT '{}',
      usage_time            timestamptz NOT NULL,
      usage_time_supplied   boolean     NOT NULL,
      usage_date            date        NOT NULL,
      record_time           timestamptz NOT NULL DEFAULT now(),
      pricing_status        text        NOT NULL CHECK (pricing_status IN ('priced', 'unpriced')),
      price_version         text,
      markup                numeric     CHECK (markup > 0),
      currency_code         text        NOT NULL DEFAULT 'USD',
      provider_cost         numeric,
      prompt_cost           numeric,
      completion_cost       numeric,
      total_cost            numeric,
      PRIMARY KEY (account_id, charge_id),
      CONSTRAINT charges_idempotency_key UNIQUE (account_id, idempotency_key),
      CONSTRAINT charges_priced_has_costs CHECK (
        (pricing_status = 'priced'   AND total_cost IS NOT NULL AND price_version IS NOT NULL AND markup IS NOT NULL) OR
        (pricing_status = 'unpriced' AND total_cost IS NULL AND provider_cost IS NULL AND prompt_cost IS NULL AND completion_cost IS NULL)
      )
    )`,
  `
    CREATE INDEX charges_by_day ON charges (account_id, usage_date)`,
  `
    CREATE INDEX charges_unpriced ON charges (account_id, usage_date) WHERE pricing_status = 'unpriced'`,
  `
    -- The Django models' DailyBillingRecord, keyed by account, UTC date, user, provider, model and charge type.
    CREATE TABLE daily_usage (
      account_id              text    NOT NULL,
      usage_date              date    NOT NULL,
      user_id                 text    NOT NULL,
      provider                text    NOT NULL,
      model                   text    NOT NULL,
      charge_type             text    NOT NULL,
      message_count           bigint  NOT NULL DEFAULT 0,
      unpriced_message_count  bigint  NOT NULL DEFAULT 0,
      prompt_tokens           bigint  NOT NULL DEFAULT 0,
      completion_tokens       bigint  NOT NULL DEFAULT 0,
      reasoning_tokens        bigint  NOT NULL DEFAULT 0,
      cached_prompt_tokens    bigint  NOT NULL DEFAULT 0,
      cache_write_tokens      bigint  NOT NULL DEFAULT 0,
      total_tokens            bigint  NOT NULL DEFAULT 0,
      provider_cost           numeric NOT NULL DEFAULT 0,
      prompt_cost             numeric NOT NULL DEFAULT 0,
      completion_cost         numeric NOT NULL DEFAULT 0,
      total_cost              numeric NOT NULL DEFAULT 0,
      updated_at              timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (account_id, usage_date, user_id, provider, model, charge_type)
    )`,
  `
    -- Counters that limit checks read by primary key: one row per scope and
    -- period (user_id = '' is the whole account).
    CREATE TABLE usage_counters (
      account_id              text    NOT NULL,
      period                  text    NOT NULL CHECK (period IN ('day')),
      period_start            date    NOT NULL,
      user_id                 text    NOT NULL,
      message_count           bigint  NOT NULL DEFAULT 0,
      unpriced_message_count  bigint  NOT NULL DEFAULT 0,
      total_tokens            bigint  NOT NULL DEFAULT 0,
      total_cost              numeric NOT NULL DEFAULT 0,
      updated_at              timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (account_id, period, period_start, user_id)
    )`,
  `
    -- Limits, one row per scope, period and measure (user_id = '' is the whole account).
    CREATE TABLE limits (
      account_id  text    NOT NULL,
      user_id     text    NOT NULL,
      period      text    NOT NULL CHECK (period IN ('day')),
      measure     text    NOT NULL CHECK (measure IN ('messages', 'tokens', 'cost')),
      amount      numeric NOT NULL CHECK (amount >= 0),
      updated_at  timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (account_id, user_id, period, measure)
    )`,
  `
    -- The Django models' LLMPrices: billed = provider cost x factor.
    CREATE TABLE markups (
      provider     text    NOT NULL,
      model        text    NOT NULL,
      charge_type  text    NOT NULL CHECK (charge_type IN ('completion', 'plugin', 'tool')),
      factor       numeric NOT NULL CHECK (factor > 0 AND factor <= 100),
      updated_at   timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (provider, model, charge_type)
    )`,
];

export async function up(knex: Knex): Promise<void> {
  for (const statement of SCHEMA) await knex.raw(statement);
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['markups', 'limits', 'usage_counters', 'daily_usage', 'charges']) await knex.schema.dropTable(table);
}
