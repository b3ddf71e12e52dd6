import { loadConfig } from './config';
import { createLogger } from './logger';
import { startServer } from './server';
import { closeDatabase, migrate, openDatabase } from './store/db';

/** Entry point: `npm start`. Configuration comes from the environment (see README). */
async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.logLevel);
  if (process.argv.includes('--migrate-only')) {
    const db = openDatabase(config.database);
    try {
      // --citus: the database is a Citus coordinator; its tables are distributed by account_id (docs/scaling.md).
      const citus = process.argv.includes('--citus');
      await migrate(db, { citus });
      log.info('database migrated', { database: config.database.url ? 'postgres' : config.database.dataDir, ...(citus ? { citus: 'tables distributed by account_id' } : {}) });
    } finally {
      await closeDatabase(db);
    }
    return;
  }
  const running = await startServer(config, log);
  log.info('listening', { address: `${config.host}:${running.port}`, port: running.port });
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      log.info('shutting down', { signal });
      running.shutdown().then(
        () => process.exit(0),
        (err) => {
          log.error('shutdown failed', { error: String(err) });
          process.exit(1);
        },
      );
    });
  }
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ time: new Date().toISOString(), level: 'error', msg: 'failed to start', error: err instanceof Error ? err.message : String(err) }) + '\n');
  process.exit(1);
});
