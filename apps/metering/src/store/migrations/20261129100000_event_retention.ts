import type { Knex } from 'knex';

/**
 * Outbox retention: events older than METERING_EVENT_RETENTION_SECONDS are
 * deleted by a periodic sweep, which finds them by created_at. A BRIN index
 * suits an append-only table whose created_at grows with its physical order,
 * and costs writers next to nothing.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw('CREATE INDEX charge_events_created_at ON charge_events USING brin (created_at)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX charge_events_created_at');
}
