import type { Knex } from 'knex';

/**
 * ImportCharges (the migration from the Django models this service replaces) can keep the cost a
 * charge had there: such a charge's price_origin is 'imported'. The column's CHECK gains that
 * value. Down fails while imported charges exist (their origin would have no meaning): delete or
 * re-rate them first.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE charges DROP CONSTRAINT charges_price_origin_check`);
  await knex.raw(`ALTER TABLE charges ADD CONSTRAINT charges_price_origin_check CHECK (price_origin IN ('catalog', 'operator', 'account', 'imported'))`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`ALTER TABLE charges DROP CONSTRAINT charges_price_origin_check`);
  await knex.raw(`ALTER TABLE charges ADD CONSTRAINT charges_price_origin_check CHECK (price_origin IN ('catalog', 'operator', 'account'))`);
}
