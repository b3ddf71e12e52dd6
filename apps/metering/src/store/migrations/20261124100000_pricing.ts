import type { Knex } from 'knex';

/**
 * Pricing (issue 3): 1-hour cache writes and per-call charges, the origin and
 * time of a charge's price, per-account markups with who set them, operator
 * prices, and the audit trail of markup and price changes. Every key leads
 * with account_id ('' = the default of every account).
 */
const UP = [
  `ALTER TABLE charges
     ADD COLUMN cache_write_1h_tokens bigint NOT NULL DEFAULT 0 CHECK (cache_write_1h_tokens BETWEEN 0 AND cache_write_tokens),
     ADD COLUMN call_count bigint NOT NULL DEFAULT 0 CHECK (call_count >= 0),
     ADD COLUMN call_cost numeric,
     ADD COLUMN price_origin text CHECK (price_origin IN ('catalog', 'operator', 'account')),
     ADD COLUMN rate_time timestamptz NOT NULL DEFAULT now()`,
  `UPDATE charges SET call_cost = 0 WHERE pricing_status = 'priced'`,
  `UPDATE charges SET price_origin = 'catalog' WHERE pricing_status = 'priced'`,
  `UPDATE charges SET rate_time = record_time`,
  `ALTER TABLE charges ADD CONSTRAINT charges_call_cost_when_priced CHECK (
     (pricing_status = 'priced' AND call_cost IS NOT NULL AND price_origin IS NOT NULL) OR
     (pricing_status = 'unpriced' AND call_cost IS NULL AND price_origin IS NULL))`,
  `ALTER TABLE daily_usage
     ADD COLUMN cache_write_1h_tokens bigint NOT NULL DEFAULT 0,
     ADD COLUMN call_count bigint NOT NULL DEFAULT 0,
     ADD COLUMN call_cost numeric NOT NULL DEFAULT 0`,
  `ALTER TABLE markups
     ADD COLUMN account_id text NOT NULL DEFAULT '',
     ADD COLUMN updated_by text NOT NULL DEFAULT ''`,
  `ALTER TABLE markups DROP CONSTRAINT markups_pkey`,
  `ALTER TABLE markups ADD PRIMARY KEY (account_id, provider, model, charge_type)`,
  `
    -- Operator prices: custom, fine-tuned and self-hosted models, or overrides
    -- of the built-in catalogue, for every account ('') or one, from a moment on.
    CREATE TABLE prices (
      account_id                 text        NOT NULL,
      provider                   text        NOT NULL,
      model                      text        NOT NULL,
      effective_time             timestamptz NOT NULL,
      rates                      jsonb       NOT NULL,
      source                     text        NOT NULL,
      updated_by                 text        NOT NULL DEFAULT '',
      updated_at                 timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (account_id, provider, model, effective_time)
    )`,
  `
    -- Who changed which markup or price, when, from what to what.
    CREATE TABLE pricing_changes (
      account_id    text        NOT NULL,
      change_id     bigint      GENERATED ALWAYS AS IDENTITY,
      kind          text        NOT NULL CHECK (kind IN ('markup_set', 'markup_deleted', 'price_set', 'price_deleted')),
      provider      text        NOT NULL,
      model         text        NOT NULL,
      charge_type   text,
      before        jsonb,
      after         jsonb,
      actor         text        NOT NULL DEFAULT '',
      change_time   timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (account_id, change_id)
    )`,
];

export async function up(knex: Knex): Promise<void> {
  for (const statement of UP) await knex.raw(statement);
}

export async function down(knex: Knex): Promise<void> {
  for (const statement of [
    `DROP TABLE pricing_changes`,
    `DROP TABLE prices`,
    `DELETE FROM markups WHERE account_id <> ''`,
    `ALTER TABLE markups DROP CONSTRAINT markups_pkey`,
    `ALTER TABLE markups ADD PRIMARY KEY (provider, model, charge_type)`,
    `ALTER TABLE markups DROP COLUMN account_id, DROP COLUMN updated_by`,
    `ALTER TABLE daily_usage DROP COLUMN cache_write_1h_tokens, DROP COLUMN call_count, DROP COLUMN call_cost`,
    `ALTER TABLE charges DROP CONSTRAINT charges_call_cost_when_priced`,
    `ALTER TABLE charges DROP COLUMN cache_write_1h_tokens, DROP COLUMN call_count, DROP COLUMN call_cost, DROP COLUMN price_origin, DROP COLUMN rate_time`,
  ]) {
    await knex.raw(statement);
  }
}
