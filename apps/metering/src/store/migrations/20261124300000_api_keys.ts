import type { Knex } from 'knex';

/** API keys (issue 7): each bound to one account, with scopes; only a hash of the secret is stored. */
const UP = [
  `
    CREATE TABLE api_keys (
      account_id   text        NOT NULL,
      key_id       text        NOT NULL,
      name         text        NOT NULL,
      scopes       text[]      NOT NULL CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['record', 'read', 'admin']),
      secret_hash  text        NOT NULL,
      created_at   timestamptz NOT NULL DEFAULT now(),
      revoked_at   timestamptz,
      PRIMARY KEY (account_id, key_id)
    )`,
];

export async function up(knex: Knex): Promise<void> {
  for (const statement of UP) await knex.raw(statement);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP TABLE api_keys');
}
