import type { Knex } from 'knex';

/**
 * GetDailyUsage in a time zone other than the account's sums charges by their usage_time. Nearly
 * every charge's usage_date is within a day of its usage_time's UTC date, so charges_by_day_id
 * finds them by usage_date with two days' margin. The exceptions are charges that settled a
 * reservation made earlier (they count on the reservation's day): this partial index holds only
 * those whose usage_date is more than a day before their usage_time, so it costs the write path
 * nearly nothing and the read finds them by time.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`CREATE INDEX charges_settled_late ON charges (account_id, usage_time) WHERE usage_date < (usage_time AT TIME ZONE 'UTC')::date - 1`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX charges_settled_late');
}
