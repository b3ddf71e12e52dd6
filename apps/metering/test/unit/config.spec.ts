import { loadConfig } from '../../src/config';

/** Configuration from the environment: documented defaults, and a refusal naming the variable for any bad value. */
describe('loadConfig', () => {
  const dev = { METERING_AUTH: 'off' };

  it('has the defaults the README documents', () => {
    const c = loadConfig(dev);
    expect(c).toMatchObject({
      host: '127.0.0.1', port: 50051, authMode: 'off', logLevel: 'info', writeConcurrency: 2, streamSlowMs: 30_000, eventPollMs: 1_000,
      eventRetentionSeconds: 0, eventPruneMs: 3_600_000, keepaliveMs: 60_000, keepaliveTimeoutMs: 20_000, database: { dataDir: '.data/pglite', poolMax: 10 },
    });
    expect(c.database.url).toBeUndefined();
  });

  it('requires an operator key of 32 characters or more unless authentication is off', () => {
    expect(() => loadConfig({})).toThrow(/METERING_OPERATOR_KEY \(at least 32 characters\) is required/);
    expect(() => loadConfig({ METERING_OPERATOR_KEY: 'short' })).toThrow(/METERING_OPERATOR_KEY/);
    expect(loadConfig({ METERING_OPERATOR_KEY: 'k'.repeat(32) }).authMode).toBe('keys');
  });

  it.each([
    ['METERING_EVENT_RETENTION_SECONDS', '-1'],
    ['METERING_EVENT_RETENTION_SECONDS', '1.5'],
    ['METERING_KEEPALIVE_MS', '99'],
    ['METERING_KEEPALIVE_TIMEOUT_MS', 'soon'],
    ['METERING_STREAM_SLOW_MS', '1e9'],
    ['PORT', '65536'],
    ['METERING_WRITE_CONCURRENCY', '0'],
  ])('refuses %s=%s, naming it and its range', (name, value) => {
    expect(() => loadConfig({ ...dev, [name]: value })).toThrow(new RegExp(`^${name} must be an integer from \\d+ to \\d+, got "${value}"$`));
  });

  it('takes a LISTEN connection string of its own (beside a pooler), only with DATABASE_URL', () => {
    const pooled = loadConfig({ ...dev, DATABASE_URL: 'postgres://m@pgbouncer:6432/m', METERING_LISTEN_DATABASE_URL: 'postgres://m@postgres:5432/m' });
    expect(pooled.database).toMatchObject({ url: 'postgres://m@pgbouncer:6432/m', listenUrl: 'postgres://m@postgres:5432/m' });
    expect(loadConfig({ ...dev, DATABASE_URL: 'postgres://m@postgres:5432/m' }).database.listenUrl).toBeUndefined();
    expect(() => loadConfig({ ...dev, METERING_LISTEN_DATABASE_URL: 'postgres://m@postgres:5432/m' })).toThrow(/METERING_LISTEN_DATABASE_URL .* needs DATABASE_URL/);
  });

  it('refuses an unknown log level or auth mode', () => {
    expect(() => loadConfig({ ...dev, LOG_LEVEL: 'verbose' })).toThrow('LOG_LEVEL must be debug, info, warn or error, got "verbose"');
    expect(() => loadConfig({ METERING_AUTH: 'maybe' })).toThrow('METERING_AUTH must be keys or off, got "maybe"');
  });
});
