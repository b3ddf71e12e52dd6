import type { Knex } from 'knex';

/**
 * Charges in (usage_date, charge_id) order within an account: ListCharges pages, ExportCharges
 * batches and re-rating (mode all) resume from a (usage_date, charge_id) cursor, a range scan
 * of this index. It replaces charges_by_day (account_id, usage_date), whose every use it
 * serves, so the write path keeps the same number of indexes.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw('CREATE INDEX charges_by_day_id ON charges (account_id, usage_date, charge_id)');
  await knex.raw('DROP INDEX charges_by_day');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('CREATE INDEX charges_by_day ON charges (account_id, usage_date)');
  await knex.raw('DROP INDEX charges_by_day_id');
}
