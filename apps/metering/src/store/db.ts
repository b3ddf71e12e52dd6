import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { ConflictRetryError, DomainError, UnavailableError, ValueOutOfRangeError } from '@metering/domain';
import { knex, Knex } from 'knex';
import ClientPgLite from 'knex-pglite';
import pg from 'pg';
import { lockDataDir } from './data-dir-lock';
import { distributeTables, isCitus } from './citus';
import { migrationSource } from './migrations';

export type Db = Knex;
export type Tx = Knex.Transaction;

export interface DatabaseConfig {
  /** Postgres connection string; when absent, the embedded database (PGlite) in dataDir. */
  url?: string;
  /**
   * Where LISTEN connects (a session of its own), when `url` goes through a pooler in
   * transaction mode (PgBouncer), which cannot keep a LISTEN; default: `url`.
   */
  listenUrl?: string;
  /** Folder of the embedded database; ':memory:' keeps it in memory (tests). */
  dataDir: string;
  poolMax: number;
  /**
   * How long a call waits for a free connection of the pool before it fails as UNAVAILABLE
   * (default 10 s). Calls of one account queue on its rows: a burst of many on one hot account
   * (hundreds of reservations at once) can wait longer than that, more so on a cluster.
   */
  acquireTimeoutMs?: number;
  /** Hot-path statements are prepared once per connection under a name (default); false sends them unnamed. */
  namedStatements?: boolean;
}

const DATE_OID = 1082;
const INT8_OID = 20;
// Dates stay 'YYYY-MM-DD' strings (the driver would build a Date at *local*
// midnight); 64-bit integers stay exact strings. The same on both drivers.
const keepText = (v: string) => v;
pg.types.setTypeParser(DATE_OID, keepText);
pg.types.setTypeParser(INT8_OID, keepText);

/** Opens the database: Postgres when a URL is configured, otherwise embedded Postgres (PGlite). */
export function openDatabase(config: DatabaseConfig): Db {
  namedStatements = config.namedStatements !== false;
  if (config.url) {
    const db = knex({
      client: 'pg',
      connection: { connectionString: config.url, application_name: 'metering' },
      pool: { min: 0, max: config.poolMax },
      acquireConnectionTimeout: config.acquireTimeoutMs ?? 10_000,
    });
    listenUrls.set(db, config.listenUrl ?? config.url);
    return db;
  }
  const inMemory = config.dataDir === ':memory:';
  if (!inMemory) mkdirSync(config.dataDir, { recursive: true });
  // One PGlite instance for the life of the Knex instance, closed by closeDatabase():
  // a second instance on the same folder, or an unclosed one, would damage it, so the
  // folder's lock (metering.pid, naming its holder) is taken first or this throws.
  const unlock = inMemory ? () => undefined : lockDataDir(config.dataDir);
  let pglite: PGlite;
  try {
    pglite = new PGlite(inMemory ? undefined : config.dataDir, { parsers: { [DATE_OID]: keepText, [INT8_OID]: keepText } });
  } catch (err) {
    unlock();
    throw err;
  }
  const db = knex({ client: ClientPgLite, dialect: 'postgres', connection: () => ({ pglite }) as object } as Knex.Config);
  embedded.set(db, { pglite, unlock });
  return db;
}

const embedded = new WeakMap<Db, { pglite: PGlite; unlock: () => void }>();
const listenUrls = new WeakMap<Db, string>();
let namedStatements = true;

/**
 * A hot-path statement of constant text, with `?` bindings: on Postgres it is
 * parsed and planned once per connection and then executed by `name`
 * (a named prepared statement); the embedded database ignores the name. The
 * text must never vary for one name.
 */
export function statement(db: Db | Tx, name: string, sql: string, bindings: readonly unknown[]): Knex.Raw {
  const q = db.raw(sql, bindings as Knex.RawBinding[]);
  if (!namedStatements) return q;
  return positioned(q.options({ name: `metering_${name}` }), sql, bindings);
}

/**
 * A read of constant text, with `?` bindings, planned on every execution with its values (an
 * unnamed statement), for reads that select rows by arrays on an index's later columns
 * (`account_id = ? AND reservation_id = ANY(?)`) or whose generic plan could pick the wrong one of
 * two indexes. A named statement's generic plan knows neither the arrays' lengths (Postgres
 * assumes 10 elements each, so probing the index for every key looks dearer than reading all of
 * the account's rows by account_id) nor the account, and the plan it settles on after five
 * executions stays until the table is next analyzed (never, with autovacuum off): CheckLimits'
 * counter read took 20 ms at 60k counters of one account (Rows Removed by Filter: 60004) against
 * 0.14 ms planned with its values (docs/benchmarks.md). A plan made with the values still follows
 * the statistics, which may be from before an account grew, so these reads are also written key
 * by key (a lateral subquery of equalities on a whole key: test/integration/hot-read-plans.spec.ts).
 * A named statement of that form is no cure: its generic plan, made while the table was small and
 * analyzed, scans the table once per key. Planning costs on every call (1.2 ms for the CheckLimits
 * read, which is why that one is a PlannedOnceRead instead); the write statements, whose plans do
 * not depend on sizes (upserts by their keys), stay named.
 */
export function perCallStatement(db: Db | Tx, sql: string, bindings: readonly unknown[]): Knex.Raw {
  return positioned(db.raw(sql, bindings as Knex.RawBinding[]), sql, bindings);
}

/** withPositionedText, unless knex must rewrite the text itself (its escapes, or bindings it inlines). */
const positioned = (q: Knex.Raw, sql: string, bindings: readonly unknown[]): Knex.Raw =>
  /\\\?|\?\?/.test(sql) || bindings.some(inlined) ? q : withPositionedText(q, sql, bindings);

/** A statement's text with knex's `?` placeholders already numbered (`$1`, `$2`, ...), by its `?` text. */
const POSITIONED = new Map<string, string>();

/** A binding knex writes into the text (a query, a raw fragment, a callback) rather than sending as a value. */
const inlined = (b: unknown): boolean => typeof b === 'function' || (typeof b === 'object' && b !== null && typeof (b as { toSQL?: unknown }).toSQL === 'function');

/** As knex's check of a raw query's bindings: an undefined value, also inside an array or a plain object. */
const hasUndefined = (v: unknown): boolean =>
  v === undefined || (Array.isArray(v) ? v.some(hasUndefined) : typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype && Object.values(v).some(hasUndefined));

type RawInternals = { sql: string; bindings: unknown; client: { positionBindings(sql: string): string }; toSQL(...args: unknown[]): { sql: string; bindings: unknown[] } };

/**
 * Knex rewrites a raw statement's text twice on every execution (the `?` bindings, then `$n`),
 * which for the long constant texts of the hot path (the apply statement is ~9.5k characters)
 * costs two copies of the text per call. The numbered text is the same every time, so it is
 * made once (by knex itself, on the statement's first execution) and reused: knex then compiles
 * the numbered text without bindings and the values are put back, so the driver, the `query`
 * events (the round-trip guard, the Citus routing check) and errors see what they saw before.
 * Only for values sent as values: a binding that knex would inline, or text with knex's escapes,
 * keeps knex's own path (statement() checks), as does a call with an undefined value (knex's error).
 */
function withPositionedText(raw: Knex.Raw, sql: string, bindings: readonly unknown[]): Knex.Raw {
  const r = raw as unknown as RawInternals;
  const compile = r.toSQL.bind(r);
  r.toSQL = (...args: unknown[]) => {
    const text = POSITIONED.get(sql);
    if (text === undefined || hasUndefined(bindings)) {
      const compiled = compile(...args);
      if (text === undefined && compiled.bindings.length === bindings.length) POSITIONED.set(sql, r.client.positionBindings(compiled.sql));
      return compiled;
    }
    r.sql = text;
    r.bindings = undefined;
    try {
      const compiled = compile(...args);
      compiled.bindings = [...bindings];
      return compiled;
    } finally {
      r.sql = sql;
      r.bindings = bindings;
    }
  };
  return raw;
}

/** How long the LISTEN connection may take to connect, to LISTEN or to close before it is given up (a silent network). */
const LISTEN_TIMEOUT_MS = 5000;

/**
 * Calls `onNotify(payload)` for every NOTIFY on `channel` (from any process on
 * the same database), on a connection of its own (Postgres, reconnecting
 * after a failure) or through the embedded database. Resolves once the first
 * attempt has LISTENed or failed (then it retries every second, and notifications
 * lost meanwhile are the caller's to make up for: WatchCharges polls). Returns
 * a stop function; when it resolves, no connection of this LISTEN is open.
 */
export async function listen(db: Db, channel: string, onNotify: (payload: string) => void, onError: (err: unknown) => void = () => undefined): Promise<() => Promise<void>> {
  const pglite = embedded.get(db)?.pglite;
  if (pglite) return pglite.listen(channel, onNotify);
  const url = listenUrls.get(db);
  if (!url) throw new Error('listen: not a database opened by openDatabase');
  let stopped = false;
  let client: pg.Client | undefined;
  let attempted!: () => void;
  const firstAttempt = new Promise<void>((resolve) => (attempted = resolve));
  /** Ends a connection; destroys its socket when the end does not finish in time (a peer gone without a word). */
  const close = async (c: pg.Client) => {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), LISTEN_TIMEOUT_MS)));
    const ended = await Promise.race([c.end().then(() => true, () => true), timedOut]);
    clearTimeout(timer);
    if (!ended) c.connection.stream.destroy();
  };
  const connect = async (): Promise<void> => {
    while (!stopped) {
      const c = new pg.Client({ connectionString: url, application_name: 'metering-listen', connectionTimeoutMillis: LISTEN_TIMEOUT_MS, query_timeout: LISTEN_TIMEOUT_MS, keepAlive: true });
      try {
        c.on('notification', (m) => m.channel === channel && onNotify(m.payload ?? ''));
        c.on('error', (err) => {
          onError(err);
          void close(c);
          if (client !== c || stopped) return;
          client = undefined; // a second error of the same connection starts no second loop
          running = connect();
        });
        await c.connect();
        await c.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
        if (stopped) await close(c); // stopped while connecting: the stop waits for this
        else client = c;
        attempted();
        return;
      } catch (err) {
        onError(err);
        await close(c);
        attempted(); // the caller goes on without notifications until a retry succeeds
        if (!stopped) await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  };
  let running = connect();
  await firstAttempt;
  return async () => {
    stopped = true;
    const c = client;
    client = undefined;
    if (c) await close(c);
    await running; // a connection under way (within its timeouts) is closed by its own loop
  };
}

/**
 * Whether the Postgres server runs without autovacuum (false for the embedded database, which
 * vacuums nothing in the background either but is meant for one process and small data). The
 * usage tables are upserted on every charge: without it they keep every dead row, and their
 * statistics stay as they were when the tables were small (docs/benchmarks.md).
 */
export async function autovacuumOff(db: Db): Promise<boolean> {
  if (embedded.has(db)) return false;
  const { rows } = await db.raw(`SELECT setting FROM pg_settings WHERE name = 'autovacuum'`);
  return (rows as Array<{ setting: string }>)[0]?.setting === 'off';
}

/** Closes the pool and, for the embedded database, the database itself (flushing it to its folder). */
export async function closeDatabase(db: Db): Promise<void> {
  await db.destroy();
  const local = embedded.get(db);
  if (!local) return;
  if (!local.pglite.closed) await local.pglite.close();
  local.unlock();
}

/** Any constant: the key of the transaction-scoped advisory lock that serializes creating knex's tables. */
const MIGRATION_TABLES_LOCK = 7_236_913_401;

/**
 * Runs the migrations. Several processes may start on a new database at once (replicas): knex
 * serializes the migrations themselves with its lock row, but creates its two tables and that row
 * without a lock, so concurrent first starts failed ("relation knex_migrations_lock already
 * exists") or could insert two lock rows. They are created here first, as knex would, under a
 * transaction-scoped advisory lock (safe behind a transaction pooler).
 *
 * On a Citus coordinator (the database has the citus extension) the tables are
 * then distributed by account_id, those not distributed yet (store/citus.ts);
 * `options.citus` requires Citus (`npm run migrate -- --citus` fails on plain Postgres).
 */
export async function migrate(db: Db, options: { citus?: boolean } = {}): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.raw('SELECT pg_advisory_xact_lock(?)', [MIGRATION_TABLES_LOCK]);
    await tx.raw('CREATE TABLE IF NOT EXISTS knex_migrations (id serial PRIMARY KEY, name varchar(255), batch integer, migration_time timestamptz)');
    await tx.raw('CREATE TABLE IF NOT EXISTS knex_migrations_lock (index serial PRIMARY KEY, is_locked integer)');
    await tx.raw('INSERT INTO knex_migrations_lock (is_locked) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM knex_migrations_lock)');
  });
  await db.migrate.latest({ migrationSource });
  if (embedded.has(db)) {
    if (options.citus) throw new Error('--citus: the embedded database is not a Citus cluster; set DATABASE_URL to the coordinator');
  } else if (options.citus || (await isCitus(db))) {
    await distributeTables(db);
    citusClients.add(db.client.config);
    return; // Citus reads with the statements' text (PlannedOnceRead.sql)
  }
  await createPlannedOnceReads(db);
}

/**
 * A hot read whose plan must not follow the tables' statistics, as a PL/pgSQL function that
 * plans its query once per connection (a generic plan: `plan_cache_mode = force_generic_plan`)
 * using indexes only (`enable_seqscan = off`; and `jit = off`: the cost that setting adds to a
 * table without an index, settings_epoch, would otherwise have every call JIT-compile the query,
 * 0.7 s), so the plan is neither made anew on every call nor
 * one made while the tables were small: an unnamed statement re-plans the CheckLimits read on
 * every call (1.2 ms of Postgres' time on a 2-core machine, more than running it), and a named
 * one, after five calls, keeps a plan that may scan the table once per key (docs/benchmarks.md,
 * "Plans made from stale statistics"). Reads of this kind select rows by whole keys, so an
 * index probe per key is the right plan at any size (test/integration/hot-read-plans.spec.ts).
 *
 * The function is made from the statement's text (`sql`, with `?` bindings, as sent on Citus,
 * which reads with the text instead) by migrate(): its name carries a hash of its definition, so
 * a process runs only the version it was built with, also while replicas of two versions share
 * a database (older versions stay until rollbackAll or a DROP by hand: `metering_read_%`).
 */
export interface PlannedOnceRead {
  /** The function's name: `metering_read_<what>_<hash>`. */
  name: string;
  /** The statement's text with `?` bindings (the read on Citus). */
  sql: string;
  /** CREATE FUNCTION. */
  ddl: string;
  /** The function's call, with a `?` per argument. */
  call: string;
  /** The values of `sql`'s bindings, from the function's arguments. */
  bindings(args: readonly unknown[]): unknown[];
}

/**
 * A PlannedOnceRead of `sql`, whose `?` bindings are the function's arguments `args` (SQL types,
 * in order) as `bindingArgs` says (the argument number of each `?`, in order), returning
 * `columns` (`name type, ...`: RETURN QUERY needs the query's exact column types).
 */
export function plannedOnceRead(what: string, sql: string, args: readonly string[], bindingArgs: readonly number[], columns: string): PlannedOnceRead {
  let n = 0;
  const body = sql.replace(/\?/g, () => `$${bindingArgs[n++]}`);
  if (n !== bindingArgs.length) throw new Error(`plannedOnceRead ${what}: ${n} bindings, ${bindingArgs.length} argument numbers`);
  const definition = `(${args.join(', ')}) RETURNS TABLE (${columns}) LANGUAGE plpgsql STABLE
      SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET jit = off AS $read$
      #variable_conflict use_column
      BEGIN
        RETURN QUERY ${body};
      END $read$`;
  const name = `metering_read_${what}_${createHash('sha256').update(definition).digest('hex').slice(0, 12)}`;
  return {
    name,
    sql,
    ddl: `CREATE FUNCTION ${name}${definition}`,
    call: `SELECT * FROM ${name}(${args.map(() => '?').join(', ')})`,
    bindings: (values) => bindingArgs.map((n) => values[n - 1]),
  };
}

/** The functions of PlannedOnceReads, every version's (the `_` escaped for LIKE). */
const PLANNED_ONCE_FUNCTIONS = `proname LIKE 'metering\\_read\\_%'`;

/** Any constant: the key of the transaction-scoped advisory lock under which the reads' functions are created. */
const PLANNED_ONCE_READS_LOCK = 7_236_913_402;

/** Creates the PlannedOnceReads of this version (store/planned-once-reads.ts) that the database lacks. */
async function createPlannedOnceReads(db: Db): Promise<void> {
  const { PLANNED_ONCE_READS } = await import('./planned-once-reads');
  await db.transaction(async (tx) => {
    await tx.raw('SELECT pg_advisory_xact_lock(?)', [PLANNED_ONCE_READS_LOCK]);
    const { rows } = await tx.raw(`SELECT proname FROM pg_proc WHERE ${PLANNED_ONCE_FUNCTIONS}`);
    const present = new Set((rows as Array<{ proname: string }>).map((r) => r.proname));
    for (const read of PLANNED_ONCE_READS) if (!present.has(read.name)) await tx.raw(read.ddl);
  });
}

/** The knex configs (shared by a Db and its transactions) of databases migrate() found to be Citus coordinators. */
const citusClients = new WeakSet<object>();

/**
 * Whether `db` (or the Db of transaction `db`) is a Citus coordinator, as migrate() found: the
 * store then picks the statement forms Citus runs best (ledger.repo.ts, applyEntries).
 */
export const onCitus = (db: Db | Tx): boolean => citusClients.has(db.client.config);

/** Reverts every migration (used by tests of the down migrations). */
export async function rollbackAll(db: Db): Promise<void> {
  const { rows } = await db.raw(`SELECT oid::regprocedure::text AS fn FROM pg_proc WHERE ${PLANNED_ONCE_FUNCTIONS}`);
  for (const { fn } of rows as Array<{ fn: string }>) await db.raw(`DROP FUNCTION ${fn}`);
  await db.migrate.rollback({ migrationSource }, true);
}

/**
 * The settings a process cached (prices, markups, account settings) changed
 * since it cached them: a write statement's epoch check failed and nothing
 * was written. The process drops its cache and retries; should it give up,
 * the caller sees ABORTED (retry-safe).
 */
export class SettingsChangedError extends ConflictRetryError {
  constructor() {
    super('settings changed while the request was served; retry with the same idempotency key');
  }
}

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', '57P01', '57P02', '57P03', '53300']);

/**
 * Database errors as domain errors: lost connections and outages become
 * UnavailableError, serialization failures and deadlocks ConflictRetryError,
 * a numeric overflow (a total past bigint or numeric range) ValueOutOfRangeError.
 * Anything else is a bug and passes through (the gRPC layer answers INTERNAL
 * without leaking it).
 */
export function translateDbError(err: unknown): unknown {
  if (err instanceof DomainError) return err;
  const e = err as { code?: string; name?: string; message?: string };
  if (e?.code === '40001' || e?.code === '40P01') return new ConflictRetryError();
  if (e?.code === 'MT001') return new SettingsChangedError();
  if (e?.code === '22003') return new ValueOutOfRangeError();
  if (
    (e?.code && (CONNECTION_CODES.has(e.code) || e.code.startsWith('08'))) ||
    e?.name === 'KnexTimeoutError' ||
    /Connection terminated|connection is closed|Client has encountered a connection error/i.test(e?.message ?? '')
  ) {
    return new UnavailableError();
  }
  return err;
}

/** Runs fn in one transaction; commits when it returns, rolls back when it throws. */
export async function inTransaction<T>(db: Db, fn: (tx: Tx) => Promise<T>): Promise<T> {
  let trx: Tx | undefined;
  let result: T;
  try {
    result = await db.transaction((tx) => fn((trx = tx)));
  } catch (err) {
    throw translateDbError(err);
  }
  const grown = trx && rollupRowsOf.get(trx);
  if (grown) rollupListeners.get(db)?.(grown);
  return result;
}

/** Rows a transaction inserted into the usage rollups (new rows, not updates of existing ones). */
export interface RollupRowsInserted {
  dailyUsage: number;
  dimensionUsage: number;
  dimensionUsageDaily: number;
}

const rollupRowsOf = new WeakMap<Tx, RollupRowsInserted>();
const rollupListeners = new WeakMap<Db, (rows: RollupRowsInserted) => void>();

/**
 * Counts rollup rows a statement inserted: told to the database's listener once the transaction
 * commits, or at once for a statement sent outside a transaction (committed when it returned).
 */
export function countRollupRows(tx: Db | Tx, rows: RollupRowsInserted): void {
  if (rows.dailyUsage === 0 && rows.dimensionUsage === 0 && rows.dimensionUsageDaily === 0) return;
  if (!tx.isTransaction) {
    rollupListeners.get(tx)?.(rows);
    return;
  }
  const sum = rollupRowsOf.get(tx as Tx) ?? { dailyUsage: 0, dimensionUsage: 0, dimensionUsageDaily: 0 };
  rollupRowsOf.set(tx as Tx, {
    dailyUsage: sum.dailyUsage + rows.dailyUsage,
    dimensionUsage: sum.dimensionUsage + rows.dimensionUsage,
    dimensionUsageDaily: sum.dimensionUsageDaily + rows.dimensionUsageDaily,
  });
}

/** Tells `listener` the rollup rows each committed transaction of inTransaction(db, ...) inserted (metrics). One listener per database. */
export function onRollupRowsInserted(db: Db, listener: (rows: RollupRowsInserted) => void): void {
  rollupListeners.set(db, listener);
}

/** Runs one read outside a transaction, with the same error translation. */
export async function read<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw translateDbError(err);
  }
}
