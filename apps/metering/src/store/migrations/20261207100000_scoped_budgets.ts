import type { Knex } from 'knex';

/**
 * Budgets per API key and per tag value (issue 20):
 * - limits.scope and usage_counters.scope: '' for the account (user_id '')
 *   and its users (as before); `api_key:<key id>` for an API key and
 *   `tag:<key>=<value>` for a tag value (libs/domain/src/limits.ts
 *   scopeKey), whose rows have user_id ''. The scope joins each primary key
 *   after user_id, so counters keep one key order (the lock order).
 * - reservations.dimensions: the declared tags' values a hold was placed on
 *   (NULL: the account had none declared), so that settling, releasing and
 *   expiring it move the same tag counters, whatever is declared by then.
 * Constant defaults: adding the columns rewrites no row.
 */
const UP = [
  `ALTER TABLE limits ADD COLUMN scope text NOT NULL DEFAULT '' CHECK (scope = '' OR user_id = '')`,
  `ALTER TABLE limits DROP CONSTRAINT limits_pkey`,
  `ALTER TABLE limits ADD PRIMARY KEY (account_id, user_id, scope, period, measure, enforcement)`,
  `ALTER TABLE usage_counters ADD COLUMN scope text NOT NULL DEFAULT '' CHECK (scope = '' OR user_id = '')`,
  `ALTER TABLE usage_counters DROP CONSTRAINT usage_counters_pkey`,
  `ALTER TABLE usage_counters ADD PRIMARY KEY (account_id, period, period_start, user_id, scope)`,
  `ALTER TABLE reservations ADD COLUMN dimensions jsonb CHECK (dimensions IS NULL OR jsonb_typeof(dimensions) = 'object')`,
];

const DOWN = [
  `ALTER TABLE reservations DROP COLUMN dimensions`,
  `DELETE FROM usage_counters WHERE scope <> ''`,
  `ALTER TABLE usage_counters DROP CONSTRAINT usage_counters_pkey`,
  `ALTER TABLE usage_counters DROP COLUMN scope`,
  `ALTER TABLE usage_counters ADD PRIMARY KEY (account_id, period, period_start, user_id)`,
  `DELETE FROM limits WHERE scope <> ''`,
  `ALTER TABLE limits DROP CONSTRAINT limits_pkey`,
  `ALTER TABLE limits DROP COLUMN scope`,
  `ALTER TABLE limits ADD PRIMARY KEY (account_id, user_id, period, measure, enforcement)`,
];

export async function up(knex: Knex): Promise<void> {
  for (const statement of UP) await knex.raw(statement);
}

export async function down(knex: Knex): Promise<void> {
  for (const statement of DOWN) await knex.raw(statement);
}
