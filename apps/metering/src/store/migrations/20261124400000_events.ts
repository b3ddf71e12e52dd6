import type { Knex } from 'knex';

/**
 * The charge stream (issue 5): an outbox of events per account with gapless
 * sequence numbers. A writer takes its account's sequence row last in its
 * transaction and holds it until commit, so an account's sequence order is
 * its commit order.
 */
const UP = [
  `
    CREATE TABLE event_sequences (
      account_id     text   NOT NULL,
      last_sequence  bigint NOT NULL,
      PRIMARY KEY (account_id)
    )`,
  `
    CREATE TABLE charge_events (
      account_id  text        NOT NULL,
      sequence    bigint      NOT NULL,
      kind        text        NOT NULL CHECK (kind IN ('charge_recorded', 'charge_rerated', 'reservation_expired', 'soft_limit_exceeded')),
      payload     jsonb       NOT NULL,
      created_at  timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (account_id, sequence)
    )`,
];

export async function up(knex: Knex): Promise<void> {
  for (const statement of UP) await knex.raw(statement);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP TABLE charge_events');
  await knex.raw('DROP TABLE event_sequences');
}
