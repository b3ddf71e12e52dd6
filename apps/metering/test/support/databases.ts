import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { knex } from 'knex';
import { closeDatabase, type DatabaseConfig, migrate, openDatabase } from '../../src/store/db';
import { PGBOUNCER_BIN, PgBouncer } from './pgbouncer';
import { ROOT } from './server-process';

/**
 * The databases every integration and end-to-end suite runs on: the embedded
 * database (PGlite, in a fresh folder, copied from one already migrated) always, and a real Postgres when
 * METERING_TEST_DATABASE_URL names a server (each test file gets a fresh
 * database on it, dropped afterwards). In CI (CI=true) the variable is
 * required: without it the Postgres suites fail instead of skipping.
 *
 * With METERING_TEST_PGBOUNCER (the pgbouncer binary), the Postgres target is
 * reached through PgBouncer in transaction mode, started for each test
 * database, with LISTEN going to Postgres directly (listenUrl, as
 * METERING_LISTEN_DATABASE_URL); the embedded target is left out then.
 */
export const PG_URL_VAR = 'METERING_TEST_DATABASE_URL';
/**
 * A Citus coordinator (postgres://user@host:port/db, its workers added with
 * citus_add_node in that database). When set, the Postgres target is a Citus
 * cluster instead (and the embedded target is left out): each test file gets
 * a fresh database on the coordinator and on every worker, with the citus
 * extension and the workers added; the server's migrate() distributes its
 * tables by account_id (store/citus.ts). Not in CI, which cannot install Citus.
 */
export const CITUS_URL_VAR = 'METERING_TEST_CITUS_URL';

/** Whether the suites run against Citus (METERING_TEST_CITUS_URL is set). */
export const onCitus = (): boolean => Boolean(process.env[CITUS_URL_VAR]);

export interface TestDatabase {
  config: DatabaseConfig;
  drop(): Promise<void>;
}

export interface DatabaseTarget {
  name: 'pglite' | 'postgres';
  create(): Promise<TestDatabase>;
}

async function createPostgres(adminUrl: string): Promise<TestDatabase> {
  const name = `metering_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = knex({ client: 'pg', connection: adminUrl, pool: { min: 0, max: 1 } });
  try {
    await admin.raw('CREATE DATABASE ??', [name]);
  } finally {
    await admin.destroy();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const bouncer = PGBOUNCER_BIN ? await PgBouncer.start(adminUrl) : undefined;
  return {
    config: bouncer ? { ...bouncer.connection(url.toString()), dataDir: '', poolMax: 10 } : { url: url.toString(), dataDir: '', poolMax: 10 },
    drop: async () => {
      await bouncer?.stop();
      const again = knex({ client: 'pg', connection: adminUrl, pool: { min: 0, max: 1 } });
      try {
        await again.raw('DROP DATABASE IF EXISTS ?? WITH (FORCE)', [name]);
      } finally {
        await again.destroy();
      }
    },
  };
}

const withDatabase = (base: string, database: string): string => {
  const url = new URL(base);
  url.pathname = `/${database}`;
  return url.toString();
};

async function onNode<T>(url: string, fn: (db: ReturnType<typeof knex>) => Promise<T>): Promise<T> {
  const db = knex({ client: 'pg', connection: url, pool: { min: 0, max: 1 } });
  try {
    return await fn(db);
  } finally {
    await db.destroy();
  }
}

/**
 * A fresh database on a Citus cluster: created on the coordinator and on each
 * worker (the workers listed in the coordinator's pg_dist_node; Citus 13 does
 * not propagate CREATE DATABASE by default), with the citus extension on
 * every node, the coordinator's host set and the workers added. Its tables are
 * distributed when the server migrates it. Dropped on every node.
 */
async function createCitus(adminUrl: string): Promise<TestDatabase> {
  const name = `metering_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  const coordinator = new URL(adminUrl);
  const workers: Array<{ host: string; port: number }> = await onNode(adminUrl, async (db) =>
    (await db.raw(`SELECT nodename AS host, nodeport AS port FROM pg_dist_node WHERE noderole = 'primary' AND groupid <> 0 ORDER BY nodeid`)).rows,
  );
  if (workers.length === 0) throw new Error(`${CITUS_URL_VAR}: the coordinator has no workers (citus_add_node) in ${coordinator.pathname}`);
  const nodeUrl = (w: { host: string; port: number }) => {
    const u = new URL(adminUrl);
    u.hostname = w.host;
    u.port = String(w.port);
    return u.toString();
  };
  const nodes = [adminUrl, ...workers.map(nodeUrl)];
  for (const node of nodes) {
    await onNode(node, (db) => db.raw('CREATE DATABASE ??', [name]));
    await onNode(withDatabase(node, name), (db) => db.raw('CREATE EXTENSION citus'));
  }
  await onNode(withDatabase(adminUrl, name), async (db) => {
    await db.raw('SELECT citus_set_coordinator_host(?, ?)', [coordinator.hostname, Number(coordinator.port || 5432)]);
    for (const w of workers) await db.raw('SELECT citus_add_node(?, ?)', [w.host, w.port]);
  });
  return {
    config: { url: withDatabase(adminUrl, name), dataDir: '', poolMax: 10 },
    drop: async () => {
      for (const node of nodes) await onNode(node, (db) => db.raw('DROP DATABASE IF EXISTS ?? WITH (FORCE)', [name]));
    },
  };
}

/**
 * A folder of the embedded database with every migration applied, made once for each version of
 * the migrations and of PGlite (its name carries a hash of both) and copied for each test database:
 * migrating a new folder costs about 8 s of CPU (PGlite is Postgres in WebAssembly), a copy of a
 * migrated one a fraction of that. The suites still migrate (or start a server that does), which
 * then finds nothing to apply. Made in a folder of its own and renamed into place, so that jest's
 * workers never copy a half-made one; when two make it at once, the first rename wins.
 */
async function migratedPglite(): Promise<string> {
  const migrations = join(ROOT, 'apps', 'metering', 'src', 'store', 'migrations');
  const hash = createHash('sha256').update(readFileSync(join(ROOT, 'node_modules', '@electric-sql', 'pglite', 'package.json')));
  for (const f of readdirSync(migrations).sort()) hash.update(f).update(readFileSync(join(migrations, f)));
  const template = join(tmpdir(), `metering-pglite-migrated-${hash.digest('hex').slice(0, 16)}`);
  if (existsSync(template)) return template;
  const building = mkdtempSync(join(tmpdir(), 'metering-pglite-migrating-'));
  try {
    const db = openDatabase({ dataDir: join(building, 'data'), poolMax: 1 });
    try {
      await migrate(db);
    } finally {
      await closeDatabase(db);
    }
    try {
      renameSync(join(building, 'data'), template);
    } catch (err) {
      if (!existsSync(template)) throw err;
    }
  } finally {
    rmSync(building, { recursive: true, force: true });
  }
  return template;
}

async function createPglite(): Promise<TestDatabase> {
  const dir = mkdtempSync(join(tmpdir(), 'metering-pglite-'));
  cpSync(await migratedPglite(), join(dir, 'data'), { recursive: true });
  return {
    config: { dataDir: join(dir, 'data'), poolMax: 1 },
    drop: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

export function databaseTargets(): DatabaseTarget[] {
  const citus = process.env[CITUS_URL_VAR];
  if (citus) return [{ name: 'postgres', create: () => createCitus(citus) }];
  const targets: DatabaseTarget[] = PGBOUNCER_BIN ? [] : [{ name: 'pglite', create: createPglite }];
  const url = process.env[PG_URL_VAR];
  if (url) targets.push({ name: 'postgres', create: () => createPostgres(url) });
  return targets;
}

/** Registers a failing test when CI must run the Postgres suites but has no server configured. */
export function requirePostgresInCi(): void {
  // A Citus coordinator is the Postgres target when it is given (databaseTargets).
  if (process.env.CI && !process.env[PG_URL_VAR] && !onCitus()) {
    it(`has Postgres configured (${PG_URL_VAR})`, () => {
      throw new Error(`${PG_URL_VAR} is not set: CI must run the Postgres suites (e.g. postgres://postgres@127.0.0.1:5432/postgres)`);
    });
  }
}

/**
 * The target of the suites that run on the embedded database only (the handlers, hostile input,
 * the CLI, the dashboard, OTLP, the packed client, the Django import's target: what they test
 * does not depend on the engine): the embedded database,
 * or the Citus cluster instead when METERING_TEST_CITUS_URL is set (then the embedded target is
 * left out, and these suites prove the same on the cluster).
 */
export function embeddedTarget(): DatabaseTarget[] {
  return databaseTargets().filter((t) => t.name === 'pglite' || onCitus());
}

/**
 * describe.each over a list that may be empty (jest refuses an empty table):
 * with no entry, one skipped test says what is missing, and the suite's body
 * (which may need what is missing, at collection) is never called.
 */
export function describeEachOf<T>(items: readonly T[], what: string): (name: string, body: (item: T) => void) => void {
  if (items.length > 0) return describe.each(items as T[]);
  return (name) => describe.skip(name.replace(/\$name/g, what), () => it.skip(`needs ${what} (not available here)`, () => undefined));
}
