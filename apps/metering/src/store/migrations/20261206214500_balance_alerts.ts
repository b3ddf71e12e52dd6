import type { Knex } from 'knex';

/**
 * Balance alerts (issue 17, BALANCE rules): credit_accounts.balance_alerts
 * keeps what stands of an account's BALANCE rules: rule id -> the amounts
 * (decimal strings) its available balance was last found below and not told
 * back above since (libs/domain/src/alerts.ts balanceAlerts). It lives on the
 * credit row, not in alert_states, because every transaction that moves the
 * account's credits locks this row first and reads it as the lock gives it
 * (the newest version): a state kept in another table would be read from the
 * statement's snapshot, older than the lock when the lock had to wait, and a
 * crossing could then be told twice. A BALANCE alert has no period, so the
 * period-end sweep (alert_states) never sees one.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE credit_accounts ADD COLUMN balance_alerts jsonb NOT NULL DEFAULT '{}'::jsonb`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE credit_accounts DROP COLUMN balance_alerts');
}
