import { AllowList, DEFAULT_ALLOWED_HOSTS, parseAllowList, RetryPolicy } from '@metering/domain';
import type { LogLevel } from './logger';
import type { AuthMode } from './grpc/auth';
import type { DatabaseConfig } from './store/db';

/** Configuration from environment variables (documented in the README). */
export interface Config {
  host: string;
  port: number;
  database: DatabaseConfig;
  logLevel: LogLevel;
  /** How long in-flight calls may run after SIGTERM before they are cut. */
  shutdownGraceMs: number;
  /** How often the database is pinged to keep the health status true. */
  healthIntervalMs: number;
  /** Group commit: how many write transactions may run at once; calls arriving meanwhile join the next one. */
  writeConcurrency: number;
  /** How often expired reservations are freed. */
  reservationSweepMs: number;
  /** WatchCharges: a subscriber that reads nothing for this long is ended (it resumes from its cursor). */
  streamSlowMs: number;
  /** WatchCharges: read the outbox at least this often even without a notification. */
  eventPollMs: number;
  /** Outbox retention: events older than this are deleted (0: kept forever). */
  eventRetentionSeconds: number;
  /** How often the retention sweep runs. */
  eventPruneMs: number;
  /** HTTP/2 keepalive: ping each connection this often... */
  keepaliveMs: number;
  /** ...and close it when the ping is not answered within this long (a dead peer's streams and calls end). */
  keepaliveTimeoutMs: number;
  /** 'keys' (API keys required) or 'off' (development only: every caller is the operator). */
  authMode: AuthMode;
  /** The operator's key (any account, any scope); required with authMode 'keys'. */
  operatorKey?: string;
  /** Prometheus metrics on GET /metrics of this port (0: any free port); off when unset. */
  metricsPort?: number;
  /** The HTTP port: the API over the Connect protocol (JSON for browsers and curl) and the dashboard at / (0: any free port); off when unset. */
  httpPort?: number;
  /** OpenTelemetry tracing over OTLP/HTTP (METERING_TRACING=otlp). */
  tracing: boolean;
  /** Webhooks (alerts): where they may go, how often the dispatcher looks for due deliveries, and each attempt's bounds and retries. */
  webhooks: {
    allowedHosts: AllowList;
    pollMs: number;
    /** How often alerts standing in a period that ended are resolved. */
    periodSweepMs: number;
    timeoutMs: number;
    maxResponseBytes: number;
    concurrency: number;
    retry: RetryPolicy;
  };
  /** The span (or resource) attribute the OTLP receiver (POST /v1/traces) reads the user id from (METERING_OTLP_USER_ATTRIBUTE, default user.id). */
  otlpUserAttribute: string;
  /** TLS: PEM files of the server's certificate chain and key; with clientCaFile, clients must present a certificate it signed (mutual TLS). */
  tls?: { certFile: string; keyFile: string; clientCaFile?: string };
}

function int(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  return n;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const logLevel = (env.LOG_LEVEL || 'info') as LogLevel;
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) throw new Error(`LOG_LEVEL must be debug, info, warn or error, got "${logLevel}"`);
  const authMode = (env.METERING_AUTH || 'keys') as AuthMode;
  if (!['keys', 'off'].includes(authMode)) throw new Error(`METERING_AUTH must be keys or off, got "${authMode}"`);
  const operatorKey = env.METERING_OPERATOR_KEY || undefined;
  if (authMode === 'keys' && (!operatorKey || operatorKey.length < 32)) {
    throw new Error('METERING_OPERATOR_KEY (at least 32 characters) is required: API keys are created with it. For local development only, METERING_AUTH=off runs without authentication');
  }
  const [certFile, keyFile, clientCaFile] = [env.METERING_TLS_CERT, env.METERING_TLS_KEY, env.METERING_TLS_CLIENT_CA].map((v) => v || undefined);
  if (Boolean(certFile) !== Boolean(keyFile)) throw new Error('METERING_TLS_CERT and METERING_TLS_KEY go together');
  if (clientCaFile && !certFile) throw new Error('METERING_TLS_CLIENT_CA (mutual TLS) needs METERING_TLS_CERT and METERING_TLS_KEY');
  if (env.METERING_LISTEN_DATABASE_URL && !env.DATABASE_URL) throw new Error('METERING_LISTEN_DATABASE_URL (LISTEN straight to Postgres when DATABASE_URL goes through a pooler) needs DATABASE_URL');
  const tracing = env.METERING_TRACING || 'off';
  if (!['otlp', 'off'].includes(tracing)) throw new Error(`METERING_TRACING must be otlp or off, got "${tracing}"`);
  let allowedHosts: AllowList;
  try {
    allowedHosts = parseAllowList(env.METERING_WEBHOOK_ALLOWED_HOSTS || DEFAULT_ALLOWED_HOSTS);
  } catch (err) {
    throw new Error(`METERING_WEBHOOK_ALLOWED_HOSTS: ${(err as Error).message}`);
  }
  return {
    webhooks: {
      allowedHosts,
      pollMs: int(env, 'METERING_WEBHOOK_POLL_MS', 1_000, 20, 60_000),
      periodSweepMs: int(env, 'METERING_ALERT_PERIOD_SWEEP_MS', 60_000, 20, 3_600_000),
      timeoutMs: int(env, 'METERING_WEBHOOK_TIMEOUT_MS', 10_000, 100, 60_000),
      maxResponseBytes: int(env, 'METERING_WEBHOOK_MAX_RESPONSE_BYTES', 65_536, 0, 16_777_216),
      concurrency: int(env, 'METERING_WEBHOOK_CONCURRENCY', 16, 1, 1000),
      retry: {
        baseDelayMs: int(env, 'METERING_WEBHOOK_RETRY_BASE_MS', 5_000, 1, 3_600_000),
        maxDelayMs: int(env, 'METERING_WEBHOOK_RETRY_MAX_MS', 3_600_000, 1, 86_400_000),
        windowMs: int(env, 'METERING_WEBHOOK_RETRY_SECONDS', 86_400, 1, 30 * 86_400) * 1000,
      },
    },
    metricsPort: env.METERING_METRICS_PORT ? int(env, 'METERING_METRICS_PORT', 0, 0, 65535) : undefined,
    httpPort: env.METERING_HTTP_PORT ? int(env, 'METERING_HTTP_PORT', 0, 0, 65535) : undefined,
    tracing: tracing === 'otlp',
    otlpUserAttribute: env.METERING_OTLP_USER_ATTRIBUTE || 'user.id',
    tls: certFile && keyFile ? { certFile, keyFile, clientCaFile } : undefined,
    authMode,
    operatorKey,
    host: env.METERING_HOST || '127.0.0.1',
    port: int(env, 'PORT', 50051, 0, 65535),
    database: {
      url: env.DATABASE_URL || undefined,
      listenUrl: env.METERING_LISTEN_DATABASE_URL || undefined,
      dataDir: env.METERING_DATA_DIR || '.data/pglite',
      poolMax: int(env, 'METERING_DB_POOL_MAX', 10, 1, 1000),
      // METERING_DB_ACQUIRE_TIMEOUT_MS: how long a call waits for a free pool connection (default 10 s).
      ...(env.METERING_DB_ACQUIRE_TIMEOUT_MS ? { acquireTimeoutMs: int(env, 'METERING_DB_ACQUIRE_TIMEOUT_MS', 10_000, 100, 600_000) } : {}),
      // METERING_NAMED_STATEMENTS=false: behind a pooler that cannot keep prepared statements (PgBouncer before 1.21 in transaction mode).
      ...(env.METERING_NAMED_STATEMENTS === 'false' ? { namedStatements: false } : {}),
    },
    logLevel,
    shutdownGraceMs: int(env, 'METERING_SHUTDOWN_GRACE_MS', 10_000, 0, 600_000),
    healthIntervalMs: int(env, 'METERING_HEALTH_INTERVAL_MS', 5_000, 100, 600_000),
    writeConcurrency: int(env, 'METERING_WRITE_CONCURRENCY', 2, 1, 64),
    reservationSweepMs: int(env, 'METERING_RESERVATION_SWEEP_MS', 1_000, 50, 3_600_000),
    streamSlowMs: int(env, 'METERING_STREAM_SLOW_MS', 30_000, 100, 3_600_000),
    eventPollMs: int(env, 'METERING_EVENT_POLL_MS', 1_000, 50, 60_000),
    eventRetentionSeconds: int(env, 'METERING_EVENT_RETENTION_SECONDS', 0, 0, 100 * 366 * 86_400),
    eventPruneMs: int(env, 'METERING_EVENT_PRUNE_MS', 3_600_000, 100, 86_400_000),
    keepaliveMs: int(env, 'METERING_KEEPALIVE_MS', 60_000, 100, 7_200_000),
    keepaliveTimeoutMs: int(env, 'METERING_KEEPALIVE_TIMEOUT_MS', 20_000, 100, 600_000),
  };
}
