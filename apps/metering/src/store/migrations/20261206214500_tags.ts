import type { Knex } from 'knex';

/**
 * Tags and the recording API key (issue 20): every charge and reservation
 * keeps the caller's tags (a JSON object of strings, validated by
 * libs/domain/src/tags.ts) and the id of the API key that wrote it ('' for
 * the operator key or with authentication off). Existing rows get {} and ''.
 * A constant default, so adding the columns rewrites no row.
 */
export async function up(knex: Knex): Promise<void> {
  for (const table of ['charges', 'reservations']) {
    await knex.raw(`ALTER TABLE ${table}
      ADD COLUMN tags jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(tags) = 'object'),
      ADD COLUMN api_key_id text NOT NULL DEFAULT ''`);
  }
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['charges', 'reservations']) await knex.raw(`ALTER TABLE ${table} DROP COLUMN tags, DROP COLUMN api_key_id`);
}
