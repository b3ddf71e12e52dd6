import type { Knex } from 'knex';

/**
 * Prepaid credits (issue 16; libs/domain/src/credits.ts has the rules):
 * - credit_accounts: an account's policy, low-balance threshold and the head of
 *   its balance history (running balance, last entry). Every credit write locks
 *   it first, so an account's entries are numbered in commit order. An account
 *   without a row has no credits and its writes never touch these tables: the
 *   row's insertion (and deletion) moves the settings epoch (a row trigger, so
 *   an upsert of an existing row does not), and every process's settings cache
 *   learns that the account now has credits before its next charge is written.
 * - credit_grants: each grant with what is spent, held, expired and voided of
 *   it; the CHECK makes an overspend impossible rather than merely unlikely.
 * - credit_entries: the balance history, numbered per account.
 * - credit_overage: what no grant covered, per account and month.
 * - reservations.credit_holds: what a reservation holds of which grant.
 */
const KINDS = ['charge_recorded', 'charge_rerated', 'reservation_expired', 'soft_limit_exceeded'];
const CREDIT_KINDS = ['grant_created', 'grant_expired', 'balance_low', 'balance_exhausted'];
const list = (xs: string[]) => xs.map((k) => `'${k}'`).join(', ');

const UP = [
  `CREATE TABLE credit_accounts (
      account_id    text        PRIMARY KEY,
      policy        text        NOT NULL DEFAULT 'deny' CHECK (policy IN ('deny', 'allow_overage')),
      low_threshold numeric     CHECK (low_threshold >= 0),
      balance       numeric     NOT NULL DEFAULT 0 CHECK (balance >= 0),
      last_entry    bigint      NOT NULL DEFAULT 0,
      updated_at    timestamptz NOT NULL DEFAULT now()
    )`,
  `CREATE TABLE credit_grants (
      account_id      text        NOT NULL,
      grant_id        uuid        NOT NULL,
      idempotency_key text        NOT NULL,
      user_id         text        NOT NULL DEFAULT '',
      kind            text        NOT NULL CHECK (kind IN ('paid', 'promotional')),
      amount          numeric     NOT NULL CHECK (amount > 0),
      priority        integer     NOT NULL,
      effective_time  timestamptz NOT NULL,
      expire_time     timestamptz,
      reason          text        NOT NULL DEFAULT '',
      actor           text        NOT NULL DEFAULT '',
      request_hash    text        NOT NULL,
      create_time     timestamptz NOT NULL,
      spent           numeric     NOT NULL DEFAULT 0,
      held            numeric     NOT NULL DEFAULT 0,
      expired         numeric     NOT NULL DEFAULT 0,
      voided          numeric     NOT NULL DEFAULT 0,
      void_time       timestamptz,
      void_reason     text,
      void_actor      text,
      PRIMARY KEY (account_id, grant_id),
      UNIQUE (account_id, idempotency_key),
      CHECK (spent >= 0 AND held >= 0 AND expired >= 0 AND voided >= 0 AND spent + held + expired + voided <= amount)
    )`,
  // The expiry sweeper's scan: grants with an unheld remainder that will expire.
  `CREATE INDEX credit_grants_expiring ON credit_grants (expire_time) WHERE expire_time IS NOT NULL AND amount > spent + held + expired + voided`,
  `CREATE TABLE credit_entries (
      account_id     text        NOT NULL,
      sequence       bigint      NOT NULL,
      kind           text        NOT NULL CHECK (kind IN ('grant', 'burn', 'hold', 'hold_released', 'expiry', 'void', 'refund', 'overage')),
      entry_time     timestamptz NOT NULL,
      grant_id       uuid,
      amount         numeric     NOT NULL,
      balance_after  numeric     NOT NULL,
      charge_id      uuid,
      reservation_id uuid,
      PRIMARY KEY (account_id, sequence)
    )`,
  // Re-rating reads what a charge burned.
  `CREATE INDEX credit_entries_by_charge ON credit_entries (account_id, charge_id) WHERE charge_id IS NOT NULL`,
  `CREATE TABLE credit_overage (
      account_id   text        NOT NULL,
      period_start date        NOT NULL,
      amount       numeric     NOT NULL,
      updated_at   timestamptz NOT NULL,
      PRIMARY KEY (account_id, period_start)
    )`,
  `ALTER TABLE reservations ADD COLUMN credit_holds jsonb NOT NULL DEFAULT '[]'`,
  `ALTER TABLE charge_events DROP CONSTRAINT charge_events_kind_check`,
  `ALTER TABLE charge_events ADD CONSTRAINT charge_events_kind_check CHECK (kind IN (${list([...KINDS, ...CREDIT_KINDS])}))`,
  `CREATE TRIGGER credit_accounts_settings_epoch AFTER INSERT OR DELETE ON credit_accounts FOR EACH ROW EXECUTE FUNCTION metering_bump_settings_epoch()`,
];

export async function up(knex: Knex): Promise<void> {
  // One statement per call: the embedded database prepares each.
  for (const statement of UP) await knex.raw(statement);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP TRIGGER credit_accounts_settings_epoch ON credit_accounts');
  await knex.raw(`DELETE FROM charge_events WHERE kind IN (${list(CREDIT_KINDS)})`);
  await knex.raw('ALTER TABLE charge_events DROP CONSTRAINT charge_events_kind_check');
  await knex.raw(`ALTER TABLE charge_events ADD CONSTRAINT charge_events_kind_check CHECK (kind IN (${list(KINDS)}))`);
  await knex.raw('ALTER TABLE reservations DROP COLUMN credit_holds');
  for (const t of ['credit_overage', 'credit_entries', 'credit_grants', 'credit_accounts']) await knex.raw(`DROP TABLE ${t}`);
}
