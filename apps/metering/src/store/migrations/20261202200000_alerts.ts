import type { Knex } from 'knex';

/**
 * Alerts (issue 17): alert rules, webhook endpoints, deliveries and their
 * attempts.
 *
 * - alert_rules: an account's rules; the spec column is the rule's target
 *   (libs/domain/src/alerts.ts) as JSON. The write paths read them with the
 *   account's soft limits into the settings cache, so the table moves the
 *   settings epoch like limits do (migration 20261201120000_settings_epoch).
 * - webhook_endpoints: where alerts are posted, each with its signing secret
 *   (kept as given: it signs, it is not a password).
 * - webhook_deliveries: one message to one endpoint, queued in the
 *   transaction whose change crossed a threshold (with its outbox event) and
 *   claimed by the dispatcher of any process (SKIP LOCKED); next_attempt_at is
 *   also the lease of a claimed attempt, so a process that dies mid-delivery
 *   leaves it to another once the lease ends. payload is the exact body signed.
 * - webhook_delivery_attempts: every attempt, as logged.
 * - alert_states: the alerts that stand triggered (written with their
 *   outbox event, dropped when they resolve), so that when a period ends its
 *   account is told once, by whichever process sweeps first.
 *
 * The outbox's kinds gain alert_triggered, alert_resolved and
 * webhook_endpoint_disabled: the CHECK is rebuilt from the kinds it allows
 * now plus these, so migrations that add kinds of their own compose in any order.
 */
const NEW_KINDS = ['alert_triggered', 'alert_resolved', 'webhook_endpoint_disabled'];

async function eventKinds(knex: Knex): Promise<string[]> {
  const { rows } = await knex.raw(
    `SELECT pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = 'charge_events'::regclass AND contype = 'c' AND conname = 'charge_events_kind_check'`,
  );
  const def: string = rows[0]?.def ?? '';
  return [...def.matchAll(/'([a-z_]+)'/g)].map((m) => m[1]);
}

async function setEventKinds(knex: Knex, kinds: string[]): Promise<void> {
  await knex.raw('ALTER TABLE charge_events DROP CONSTRAINT IF EXISTS charge_events_kind_check');
  await knex.raw(`ALTER TABLE charge_events ADD CONSTRAINT charge_events_kind_check CHECK (kind IN (${kinds.map((k) => `'${k}'`).join(', ')}))`);
}

const UP = [
  `CREATE TABLE alert_rules (
      account_id   text        NOT NULL,
      rule_id      uuid        NOT NULL,
      description  text        NOT NULL DEFAULT '',
      kind         text        NOT NULL,
      spec         jsonb       NOT NULL,
      created_at   timestamptz NOT NULL DEFAULT now(),
      updated_at   timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (account_id, rule_id)
    )`,
  `CREATE TRIGGER alert_rules_settings_epoch AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON alert_rules FOR EACH STATEMENT EXECUTE FUNCTION metering_bump_settings_epoch()`,
  `CREATE TABLE webhook_endpoints (
      account_id       text        NOT NULL,
      endpoint_id      uuid        NOT NULL,
      url              text        NOT NULL,
      description      text        NOT NULL DEFAULT '',
      enabled          boolean     NOT NULL,
      event_types      text[]      NOT NULL DEFAULT '{}',
      format           text        NOT NULL CHECK (format IN ('standard', 'slack')),
      secret           text        NOT NULL,
      disabled_reason  text        NOT NULL DEFAULT '',
      created_at       timestamptz NOT NULL DEFAULT now(),
      updated_at       timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (account_id, endpoint_id)
    )`,
  `CREATE TABLE webhook_deliveries (
      account_id       text        NOT NULL,
      delivery_id      text        NOT NULL,
      endpoint_id      uuid        NOT NULL,
      event_type       text        NOT NULL,
      payload          text        NOT NULL,
      status           text        NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
      attempt_count    integer     NOT NULL DEFAULT 0,
      next_attempt_at  timestamptz NOT NULL,
      window_start     timestamptz NOT NULL,
      created_at       timestamptz NOT NULL,
      PRIMARY KEY (account_id, delivery_id),
      FOREIGN KEY (account_id, endpoint_id) REFERENCES webhook_endpoints (account_id, endpoint_id) ON DELETE CASCADE
    )`,
  `CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending'`,
  `CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (account_id, created_at DESC, delivery_id DESC)`,
  `CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (account_id, endpoint_id)`,
  `CREATE TABLE webhook_delivery_attempts (
      account_id        text        NOT NULL,
      delivery_id       text        NOT NULL,
      attempt           integer     NOT NULL,
      started_at        timestamptz NOT NULL,
      latency_ms        integer     NOT NULL,
      http_status       integer     NOT NULL,
      error             text        NOT NULL,
      response_excerpt  text        NOT NULL,
      success           boolean     NOT NULL,
      next_attempt_at   timestamptz,
      PRIMARY KEY (account_id, delivery_id, attempt, started_at),
      FOREIGN KEY (account_id, delivery_id) REFERENCES webhook_deliveries (account_id, delivery_id) ON DELETE CASCADE
    )`,
  `CREATE TABLE alert_states (
      account_id    text        NOT NULL,
      rule_id       uuid        NOT NULL,
      user_id       text        NOT NULL,
      period        text        NOT NULL,
      period_start  date        NOT NULL,
      threshold     text        NOT NULL,
      alert         jsonb       NOT NULL,
      created_at    timestamptz NOT NULL,
      PRIMARY KEY (account_id, rule_id, user_id, period, period_start, threshold)
    )`,
  `CREATE INDEX alert_states_by_start ON alert_states (period_start)`,
];

export async function up(knex: Knex): Promise<void> {
  // One statement per call: the embedded database prepares each.
  for (const s of UP) await knex.raw(s);
  const kinds = await eventKinds(knex);
  await setEventKinds(knex, [...new Set([...kinds, ...NEW_KINDS])]);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DELETE FROM charge_events WHERE kind IN (${NEW_KINDS.map((k) => `'${k}'`).join(', ')})`);
  const kinds = await eventKinds(knex);
  await setEventKinds(knex, kinds.filter((k) => !NEW_KINDS.includes(k)));
  await knex.raw('DROP TABLE alert_states');
  await knex.raw('DROP TABLE webhook_delivery_attempts');
  await knex.raw('DROP TABLE webhook_deliveries');
  await knex.raw('DROP TABLE webhook_endpoints');
  await knex.raw('DROP TRIGGER alert_rules_settings_epoch ON alert_rules');
  await knex.raw('DROP TABLE alert_rules');
}
