import type { Db } from './db';

/**
 * Running on a Citus cluster (docs/scaling.md, section 4). Every per-account
 * table is distributed by account_id and co-located with `accounts`, so one
 * account's rows of every table live on one shard group and a statement that
 * filters on `account_id = $1` runs on one node. The tables every account
 * reads (operator prices and markups, under account_id '' for everyone), the
 * global settings epoch and the list of accounts that keep usage hours (which
 * every write of hourly_counters reads) are reference tables, copied to every node.
 *
 * A migration that creates a table must add it to exactly one list below
 * (test/unit/citus-tables.spec.ts fails otherwise), lead its keys with
 * account_id when it is per account, and use no volatile function in a
 * statement on a distributed table where Citus forbids it (test/unit/sql-lint.spec.ts).
 */

/** Replicated to every node: small, read by every account, written by the operator. */
export const REFERENCE_TABLES = ['settings_epoch', 'prices', 'markups', 'hour_tracking'] as const;

/**
 * Distributed by account_id, co-located with the first. In foreign-key order:
 * a table is distributed after the tables it references.
 */
export const DISTRIBUTED_TABLES = [
  'accounts',
  'charges',
  'daily_usage',
  'usage_counters',
  'limits',
  'reservations',
  'api_keys',
  'charge_events',
  'event_sequences',
  'pricing_changes',
  'credit_accounts',
  'credit_grants',
  'credit_entries',
  'credit_overage',
  'alert_rules',
  'webhook_endpoints',
  'webhook_deliveries',
  'webhook_delivery_attempts',
  'alert_states',
  'account_dimensions',
  'dimension_usage',
  'dimension_values',
  'dimension_usage_daily',
  'hourly_counters',
] as const;

/** Knex's bookkeeping: stays on the coordinator. */
export const LOCAL_TABLES = ['knex_migrations', 'knex_migrations_lock'] as const;

/** Whether the database has the Citus extension (it is then the coordinator of a cluster). */
export async function isCitus(db: Db): Promise<boolean> {
  const { rows } = await db.raw(`SELECT 1 FROM pg_extension WHERE extname = 'citus'`);
  return rows.length > 0;
}

/** Whether this database was distributed already (the `accounts` table is). */
export async function isDistributed(db: Db): Promise<boolean> {
  if (!(await isCitus(db))) return false;
  const { rows } = await db.raw(`SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'accounts'::regclass`);
  return rows.length > 0;
}

/** Any constant: the key of the transaction-scoped advisory lock that serializes distributing (several replicas may start at once). */
const DISTRIBUTE_LOCK = 7_236_913_402;

/**
 * Distributes every table that is not yet, idempotently: `migrate()` runs it
 * after every migration batch on a database with the citus extension, so it
 * distributes only what new migrations created. Existing rows are copied into
 * the shards (a long step on a big database: run it once with
 * `npm run migrate -- --citus` before starting the servers). Returns what it distributed.
 *
 * - The settings-epoch triggers (migration 20261201120000_settings_epoch) are
 *   dropped: on Citus a trigger runs on the shard, where updating the
 *   reference table settings_epoch is a nested distributed query, which Citus
 *   refuses. The repositories move the epoch themselves (bumpSettingsEpoch);
 *   SQL by hand on a Citus database must too.
 * - metering_settings_are() reads settings_epoch from inside a write statement
 *   that runs on a shard: it is allowed that one nested read of the reference
 *   table (citus.allow_nested_distributed_execution, set on the function only),
 *   which every node holds a copy of and reads locally.
 */
export async function distributeTables(db: Db): Promise<string[]> {
  if (!(await isCitus(db))) throw new Error('distributeTables: the citus extension is not installed in this database (CREATE EXTENSION citus and add the worker nodes first, see docs/scaling.md)');
  const changed = await db.transaction(async (tx) => {
    await tx.raw('SELECT pg_advisory_xact_lock(?)', [DISTRIBUTE_LOCK]);
    const { rows: triggers } = await tx.raw(
      `SELECT t.tgname AS name, t.tgrelid::regclass::text AS tbl FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
        WHERE NOT t.tgisinternal AND p.proname = 'metering_bump_settings_epoch'`,
    );
    for (const t of triggers as Array<{ name: string; tbl: string }>) await tx.raw('DROP TRIGGER ?? ON ??', [t.name, t.tbl]);
    const { rows } = await tx.raw(`SELECT logicalrelid::regclass::text AS name FROM pg_dist_partition`);
    const done = new Set((rows as { name: string }[]).map((r) => r.name));
    const changed: string[] = [];
    for (const t of REFERENCE_TABLES) {
      if (done.has(t)) continue;
      await tx.raw('SELECT create_reference_table(?)', [t]);
      changed.push(t);
    }
    for (const t of DISTRIBUTED_TABLES) {
      if (done.has(t)) continue;
      await tx.raw(`SELECT create_distributed_table(?, 'account_id', colocate_with => ?)`, [t, t === 'accounts' ? 'none' : 'accounts']);
      changed.push(t);
    }
    return changed;
  });
  // In a transaction of its own (Citus refuses a function's DDL after a parallel operation on a
  // distributed table), under the lock and only once (concurrent ALTERs of one function fail).
  await db.transaction(async (tx) => {
    await tx.raw('SELECT pg_advisory_xact_lock(?)', [DISTRIBUTE_LOCK]);
    const { rows: fn } = await tx.raw(`SELECT proconfig FROM pg_proc WHERE oid = 'metering_settings_are(bigint)'::regprocedure`);
    if (!((fn[0]?.proconfig as string[] | null) ?? []).includes('citus.allow_nested_distributed_execution=on')) {
      await tx.raw('ALTER FUNCTION metering_settings_are(bigint) SET citus.allow_nested_distributed_execution = on');
    }
  });
  return changed;
}

/**
 * The accounts an UPDATE of the apply statement writes (ledger.repo.ts APPLY_CTES, credits.repo.ts
 * CREDIT_CTES): `<alias>.account_id = ANY(?)`, followed on Citus (`chained` false) by
 * `AND ?::boolean`, false when the UPDATE has no rows to write: Citus then prunes it to no shard
 * (an empty UPDATE cost a round trip to the worker, four of them in a reservation). The
 * statement's parameters add those booleans (ledger.repo.ts, citusParams).
 */
export const updatedAccounts = (alias: string, chained: boolean): string => `${alias}.account_id = ANY(?::text[])${chained ? '' : ' AND ?::boolean'}`;
