import type { Knex } from 'knex';

/**
 * Budgets (issue 4): account settings (time zone), month counters and
 * limits, soft limits, and reservations. Counters gain the amounts held by
 * open reservations. Every key leads with account_id.
 */
const UP = [
  `
    -- Account settings. An account without a row uses UTC.
    CREATE TABLE accounts (
      account_id  text        NOT NULL,
      time_zone   text        NOT NULL,
      updated_at  timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (account_id)
    )`,
  `ALTER TABLE usage_counters DROP CONSTRAINT usage_counters_period_check`,
  `ALTER TABLE usage_counters
     ADD CONSTRAINT usage_counters_period_check CHECK (period IN ('day', 'month')),
     ADD COLUMN reserved_messages bigint  NOT NULL DEFAULT 0,
     ADD COLUMN reserved_tokens   bigint  NOT NULL DEFAULT 0,
     ADD COLUMN reserved_cost     numeric NOT NULL DEFAULT 0`,
  `
    -- Month counters of the usage recorded so far (period_start = the 1st).
    INSERT INTO usage_counters (account_id, period, period_start, user_id, message_count, unpriced_message_count, total_tokens, total_cost)
    SELECT account_id, 'month', date_trunc('month', period_start)::date, user_id,
           sum(message_count), sum(unpriced_message_count), sum(total_tokens), sum(total_cost)
      FROM usage_counters WHERE period = 'day'
     GROUP BY account_id, date_trunc('month', period_start)::date, user_id`,
  `ALTER TABLE limits DROP CONSTRAINT limits_period_check`,
  `ALTER TABLE limits
     ADD CONSTRAINT limits_period_check CHECK (period IN ('day', 'month')),
     ADD COLUMN enforcement text NOT NULL DEFAULT 'hard' CHECK (enforcement IN ('hard', 'soft'))`,
  `ALTER TABLE limits DROP CONSTRAINT limits_pkey`,
  `ALTER TABLE limits ADD PRIMARY KEY (account_id, user_id, period, measure, enforcement)`,
  `
    -- Two-phase reservations: amounts held on the day and month counters of
    -- period_day (local) from CheckLimits until settled by a charge, released
    -- or expired.
    CREATE TABLE reservations (
      account_id       text        NOT NULL,
      reservation_id   uuid        NOT NULL,
      idempotency_key  text        NOT NULL,
      user_id          text        NOT NULL,
      status           text        NOT NULL CHECK (status IN ('held', 'settled', 'released', 'expired')),
      held_messages    bigint      NOT NULL CHECK (held_messages >= 0),
      held_tokens      bigint      NOT NULL CHECK (held_tokens >= 0),
      held_cost        numeric     NOT NULL CHECK (held_cost >= 0),
      period_day       date        NOT NULL,
      request_hash     text        NOT NULL,
      create_time      timestamptz NOT NULL,
      expire_time      timestamptz NOT NULL,
      finish_time      timestamptz,
      charge_id        uuid,
      PRIMARY KEY (account_id, reservation_id),
      CONSTRAINT reservations_idempotency_key UNIQUE (account_id, idempotency_key),
      CONSTRAINT reservations_finished CHECK ((status = 'held') = (finish_time IS NULL))
    )`,
  `CREATE INDEX reservations_held_by_expiry ON reservations (expire_time) WHERE status = 'held'`,
  `CREATE INDEX reservations_held_by_account ON reservations (account_id, expire_time) WHERE status = 'held'`,
  `ALTER TABLE charges ADD COLUMN reservation_id uuid`,
];

const DOWN = [
  `ALTER TABLE charges DROP COLUMN reservation_id`,
  `DROP TABLE reservations`,
  `DELETE FROM limits WHERE period <> 'day' OR enforcement <> 'hard'`,
  `ALTER TABLE limits DROP CONSTRAINT limits_pkey`,
  `ALTER TABLE limits DROP COLUMN enforcement`,
  `ALTER TABLE limits ADD PRIMARY KEY (account_id, user_id, period, measure)`,
  `ALTER TABLE limits DROP CONSTRAINT limits_period_check`,
  `ALTER TABLE limits ADD CONSTRAINT limits_period_check CHECK (period IN ('day'))`,
  `DELETE FROM usage_counters WHERE period <> 'day'`,
  `ALTER TABLE usage_counters DROP COLUMN reserved_messages, DROP COLUMN reserved_tokens, DROP COLUMN reserved_cost`,
  `ALTER TABLE usage_counters DROP CONSTRAINT usage_counters_period_check`,
  `ALTER TABLE usage_counters ADD CONSTRAINT usage_counters_period_check CHECK (period IN ('day'))`,
  `DROP TABLE accounts`,
];

export async function up(knex: Knex): Promise<void> {
  for (const statement of UP) await knex.raw(statement);
}

export async function down(knex: Knex): Promise<void> {
  for (const statement of DOWN) await knex.raw(statement);
}
