import { Metadata, Server, ServerCredentials } from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import { readFileSync } from 'node:fs';
import { ReflectionService } from '@grpc/reflection';
import { BinaryReader } from '@bufbuild/protobuf/wire';
import { descriptorSetBase64, HealthService, MAX_MESSAGE_BYTES, MeteringServiceServer, MeteringServiceService } from '@metering/contracts';
import { PriceTable } from '@metering/pricing';
import { type AllowList, DEFAULT_ALLOWED_HOSTS, parseAllowList } from '@metering/domain';
import type { Config } from './config';
import { Authenticator, AuthMode, authorize, type Caller } from './grpc/auth';
import { Health } from './grpc/health';
import { OpenStreams, serverStream, StreamControl } from './grpc/stream';
import { type Telemetry, unary } from './grpc/unary';
import { checkedService, rejectMalformed } from './grpc/wire';
import { type HttpServer, serveHttp } from './http/server';
import { watchChargesHandler } from './handlers/events.handler';
import { Metrics } from './observability/metrics';
import { Tracing } from './observability/tracing';
import { createApiKeyHandler, listApiKeysHandler, revokeApiKeyHandler } from './handlers/api-keys.handler';
import { importChargesHandler, recordChargeHandler, recordChargesHandler } from './handlers/charges.handler';
import { exportChargesHandler, getChargeHandler, listChargesHandler } from './handlers/charge-queries.handler';
import { getAccountHandler, listAccountsHandler, setAccountHandler } from './handlers/accounts.handler';
import { checkLimitsHandler, deleteLimitHandler, getLimitsHandler, listLimitsHandler, putLimitHandler, setLimitsHandler } from './handlers/limits.handler';
import { getReservationHandler, listReservationsHandler, releaseReservationHandler } from './handlers/reservations.handler';
import { deleteMarkupHandler, listMarkupsHandler, setMarkupHandler } from './handlers/markups.handler';
import {
  deletePriceHandler,
  estimateCostHandler,
  getPriceHandler,
  listModelsHandler,
  listPricingChangesHandler,
  rerateChargesHandler,
  setPriceHandler,
} from './handlers/pricing.handler';
import { getDailyUsageHandler } from './handlers/usage.handler';
import { getDimensionsHandler, queryUsageHandler, setDimensionsHandler } from './handlers/dimensions.handler';
import { DimensionsService } from './services/dimensions.service';
import { createGrantHandler, getBalanceHandler, listBalanceEntriesHandler, listGrantsHandler, setCreditPolicyHandler, voidGrantHandler } from './handlers/credits.handler';
import { CreditsService } from './services/credits.service';
import {
  createAlertRuleHandler,
  createWebhookEndpointHandler,
  deleteAlertRuleHandler,
  deleteWebhookEndpointHandler,
  getAlertRuleHandler,
  getWebhookEndpointHandler,
  listAlertRulesHandler,
  listDeliveriesHandler,
  listDeliveryAttemptsHandler,
  listWebhookEndpointsHandler,
  redeliverHandler,
  rotateWebhookSecretHandler,
  sendTestEventHandler,
  updateAlertRuleHandler,
  updateWebhookEndpointHandler,
} from './handlers/alerts.handler';
import type { Logger } from './logger';
import { AccountsService } from './services/accounts.service';
import { AlertsService } from './services/alerts.service';
import { WebhookDispatcher } from './services/webhook-dispatcher';
import { ApiKeysService } from './services/api-keys.service';
import { ChargesService } from './services/charges.service';
import { ChargeQueriesService } from './services/charge-queries.service';
import { EventNotifier, EventsService, pruneEvents } from './services/events.service';
import { LimitsService } from './services/limits.service';
import { MarkupsService } from './services/markups.service';
import { PricingService } from './services/pricing.service';
import { RerateService } from './services/rerate.service';
import { ReservationsService } from './services/reservations.service';
import { SettingsCache } from './services/settings-cache';
import { UsageService } from './services/usage.service';
import { autovacuumOff, closeDatabase, Db, listen, migrate, openDatabase } from './store/db';
import { EVENTS_CHANNEL } from './store/events.repo';

export const SERVICE_NAME = 'metering.v1.MeteringService';

/** A unary RPC, whatever the transport: authenticate, authorize, then handler -> service -> store. */
export type UnaryMethod = (req: never, metadata: Metadata) => Promise<unknown>;
/** A server-streaming RPC, whatever the transport: it writes through a StreamControl. */
export type StreamMethod = (req: never, metadata: Metadata, control: StreamControl) => Promise<void>;

/**
 * Every RPC of MeteringService as a transport-neutral function, keyed by the generated method
 * name (recordCharge, ...). The gRPC server (meteringService) and the HTTP port (Connect, src/http)
 * serve these same functions, so authentication, the access policy, validation and every rule
 * exist once.
 */
export interface MeteringMethods {
  unary: Record<string, UnaryMethod>;
  streams: Record<string, StreamMethod>;
  /** How long a stream subscriber may not read; open streams, so that shutdown can end them. */
  slowMs: number;
  open: OpenStreams;
}

export interface MeteringOptions {
  clock?: () => Date;
  writeConcurrency?: number;
  authMode?: AuthMode;
  operatorKey?: string;
  metrics?: Metrics;
  /** WatchCharges: woken by NOTIFY; streams registered for shutdown; how long a subscriber may not read; how often to poll. */
  events?: { notifier: EventNotifier; open: OpenStreams; slowMs: number; pollMs: number };
  /** Where webhook endpoints may point (METERING_WEBHOOK_ALLOWED_HOSTS); default: public addresses only. */
  webhookAllow?: AllowList;
}

export function meteringMethods(db: Db, opts: MeteringOptions = {}): MeteringMethods {
  const { clock, writeConcurrency, metrics } = opts;
  // A revocation drops the key from this process's cache at once.
  const apiKeys = new ApiKeysService(db, clock, (accountId, keyId) => authenticator.forget(accountId, keyId));
  const authenticator = new Authenticator(apiKeys, opts.authMode ?? 'keys', opts.operatorKey);
  // Every RPC: authenticate, refuse a request whose bytes did not decode (INVALID_ARGUMENT naming
  // the field), authorize by the policy table (before any read or write), then the handler.
  const guard = async (name: string, req: unknown, metadata: Metadata) => {
    const principal = await authenticator.authenticate(metadata);
    rejectMalformed(req);
    authorize(name, principal, req);
    return principal;
  };
  // The handler is told the caller (its API key id, which charges and reservations record).
  const rpc =
    <Req, Res>(name: string, handle: (req: Req, who: Caller) => Promise<Res>) =>
    async (req: Req, metadata: Metadata): Promise<Res> => {
      const principal = await guard(name, req, metadata);
      return handle(req, principal);
    };
  const stream =
    <Req>(name: string, handle: (req: Req, metadata: Metadata, control: StreamControl) => Promise<void>) =>
    async (req: Req, metadata: Metadata, control: StreamControl): Promise<void> => {
      await guard(name, req, metadata);
      return handle(req, metadata, control);
    };
  const pricing = new PricingService(db, new PriceTable(), clock);
  // One in-process settings cache for the hot paths (exact across replicas: see SettingsCache).
  const settings = new SettingsCache();
  const charges = new ChargesService(db, pricing, clock, writeConcurrency, (batch) => metrics?.writeBatch(batch), settings);
  const rerate = new RerateService(db, pricing, clock);
  const usage = new UsageService(db);
  const limits = new LimitsService(db, pricing, clock, settings);
  const reservations = new ReservationsService(db, clock);
  const accounts = new AccountsService(db, clock);
  const markups = new MarkupsService(db);
  const streams = opts.events ?? { notifier: new EventNotifier(), open: new OpenStreams(), slowMs: 30_000, pollMs: 1000 };
  const eventsService = new EventsService(db, streams.notifier, streams.pollMs);
  const chargeQueries = new ChargeQueriesService(db);
  const credits = new CreditsService(db, clock);
  const alerts = new AlertsService(db, opts.webhookAllow ?? parseAllowList(DEFAULT_ALLOWED_HOSTS), clock);
  const dimensions = new DimensionsService(db, clock);
  const unary = {
    recordCharge: rpc('RecordCharge', recordChargeHandler(charges)),
    recordCharges: rpc('RecordCharges', recordChargesHandler(charges)),
    importCharges: rpc('ImportCharges', importChargesHandler(charges)),
    getDailyUsage: rpc('GetDailyUsage', getDailyUsageHandler(usage)),
    checkLimits: rpc('CheckLimits', checkLimitsHandler(limits)),
    setLimits: rpc('SetLimits', setLimitsHandler(limits)),
    getLimits: rpc('GetLimits', getLimitsHandler(limits)),
    putLimit: rpc('PutLimit', putLimitHandler(limits)),
    deleteLimit: rpc('DeleteLimit', deleteLimitHandler(limits)),
    listLimits: rpc('ListLimits', listLimitsHandler(limits)),
    releaseReservation: rpc('ReleaseReservation', releaseReservationHandler(reservations)),
    getReservation: rpc('GetReservation', getReservationHandler(reservations)),
    setAccount: rpc('SetAccount', setAccountHandler(accounts)),
    getAccount: rpc('GetAccount', getAccountHandler(accounts)),
    setMarkup: rpc('SetMarkup', setMarkupHandler(markups)),
    listMarkups: rpc('ListMarkups', listMarkupsHandler(markups)),
    deleteMarkup: rpc('DeleteMarkup', deleteMarkupHandler(markups)),
    listPricingChanges: rpc('ListPricingChanges', listPricingChangesHandler(pricing)),
    listModels: rpc('ListModels', listModelsHandler(pricing)),
    getPrice: rpc('GetPrice', getPriceHandler(pricing)),
    estimateCost: rpc('EstimateCost', estimateCostHandler(pricing)),
    setPrice: rpc('SetPrice', setPriceHandler(pricing)),
    deletePrice: rpc('DeletePrice', deletePriceHandler(pricing)),
    rerateCharges: rpc('RerateCharges', rerateChargesHandler(rerate)),
    listAccounts: rpc('ListAccounts', listAccountsHandler(accounts)),
    listReservations: rpc('ListReservations', listReservationsHandler(reservations)),
    getCharge: rpc('GetCharge', getChargeHandler(chargeQueries)),
    listCharges: rpc('ListCharges', listChargesHandler(chargeQueries)),
    createApiKey: rpc('CreateApiKey', createApiKeyHandler(apiKeys)),
    revokeApiKey: rpc('RevokeApiKey', revokeApiKeyHandler(apiKeys)),
    listApiKeys: rpc('ListApiKeys', listApiKeysHandler(apiKeys)),
    createGrant: rpc('CreateGrant', createGrantHandler(credits)),
    voidGrant: rpc('VoidGrant', voidGrantHandler(credits)),
    listGrants: rpc('ListGrants', listGrantsHandler(credits)),
    getBalance: rpc('GetBalance', getBalanceHandler(credits)),
    listBalanceEntries: rpc('ListBalanceEntries', listBalanceEntriesHandler(credits)),
    setCreditPolicy: rpc('SetCreditPolicy', setCreditPolicyHandler(credits)),
    createAlertRule: rpc('CreateAlertRule', createAlertRuleHandler(alerts)),
    getAlertRule: rpc('GetAlertRule', getAlertRuleHandler(alerts)),
    listAlertRules: rpc('ListAlertRules', listAlertRulesHandler(alerts)),
    updateAlertRule: rpc('UpdateAlertRule', updateAlertRuleHandler(alerts)),
    deleteAlertRule: rpc('DeleteAlertRule', deleteAlertRuleHandler(alerts)),
    createWebhookEndpoint: rpc('CreateWebhookEndpoint', createWebhookEndpointHandler(alerts)),
    getWebhookEndpoint: rpc('GetWebhookEndpoint', getWebhookEndpointHandler(alerts)),
    listWebhookEndpoints: rpc('ListWebhookEndpoints', listWebhookEndpointsHandler(alerts)),
    updateWebhookEndpoint: rpc('UpdateWebhookEndpoint', updateWebhookEndpointHandler(alerts)),
    deleteWebhookEndpoint: rpc('DeleteWebhookEndpoint', deleteWebhookEndpointHandler(alerts)),
    rotateWebhookSecret: rpc('RotateWebhookSecret', rotateWebhookSecretHandler(alerts)),
    listDeliveries: rpc('ListDeliveries', listDeliveriesHandler(alerts)),
    listDeliveryAttempts: rpc('ListDeliveryAttempts', listDeliveryAttemptsHandler(alerts)),
    redeliver: rpc('Redeliver', redeliverHandler(alerts)),
    sendTestEvent: rpc('SendTestEvent', sendTestEventHandler(alerts)),
    setDimensions: rpc('SetDimensions', setDimensionsHandler(dimensions)),
    getDimensions: rpc('GetDimensions', getDimensionsHandler(dimensions)),
    queryUsage: rpc('QueryUsage', queryUsageHandler(dimensions)),
  } satisfies Partial<Record<keyof MeteringServiceServer, unknown>>;
  const serverStreams = {
    watchCharges: stream('WatchCharges', watchChargesHandler(eventsService, streams.slowMs)),
    exportCharges: stream('ExportCharges', exportChargesHandler(chargeQueries, streams.slowMs)),
  } satisfies Partial<Record<keyof MeteringServiceServer, unknown>>;
  return { unary: unary as Record<string, UnaryMethod>, streams: serverStreams as Record<string, StreamMethod>, slowMs: streams.slowMs, open: streams.open };
}

/** The gRPC MeteringService: each of the methods with its request id, log line, metrics, trace span and error mapping. */
export function meteringService(methods: MeteringMethods, log: Logger, telemetry: Telemetry): MeteringServiceServer {
  const server: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(MeteringServiceService)) {
    const rpcName = def.path.split('/').pop() as string;
    if (!(def.responseStream ? methods.streams[name] : methods.unary[name])) throw new Error(`${rpcName} has no implementation in meteringMethods`);
    server[name] = def.responseStream
      ? serverStream(rpcName, log, methods.streams[name] as StreamMethod, { slowMs: methods.slowMs, open: methods.open, telemetry })
      : unary(rpcName, log, methods.unary[name] as (req: unknown, metadata: Metadata) => Promise<unknown>, telemetry);
  }
  return server as unknown as MeteringServiceServer;
}

/**
 * The contract for server reflection: the exact FileDescriptorProtos that buf
 * built from proto/ (field 1 of the FileDescriptorSet), with their fully
 * qualified references and comments, in the shape @grpc/reflection reads.
 */
function reflectionPackage(): PackageDefinition {
  const reader = new BinaryReader(Buffer.from(descriptorSetBase64, 'base64'));
  const files: Buffer[] = [];
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1) files.push(Buffer.from(reader.bytes()));
    else reader.skip(wireType);
  }
  // @grpc/reflection reads only `fileDescriptorProtos` of each entry.
  return { 'metering.v1': { fileDescriptorProtos: files } } as unknown as PackageDefinition;
}

/** Plaintext, TLS, or mutual TLS (clients must present a certificate signed by the configured CA). */
function serverCredentials(config: Config): ServerCredentials {
  if (!config.tls) return ServerCredentials.createInsecure();
  const { certFile, keyFile, clientCaFile } = config.tls;
  return ServerCredentials.createSsl(
    clientCaFile ? readFileSync(clientCaFile) : null,
    [{ cert_chain: readFileSync(certFile), private_key: readFileSync(keyFile) }],
    clientCaFile !== undefined,
  );
}

export interface RunningServer {
  port: number;
  /** The HTTP port (Connect and the dashboard), when METERING_HTTP_PORT is set. */
  httpPort?: number;
  db: Db;
  health: Health;
  /** Stops taking calls (health NOT_SERVING first), lets in-flight calls finish within the grace period, closes the database. */
  shutdown(): Promise<void>;
}

/**
 * Opens the database, migrates it, and serves MeteringService, grpc.health.v1
 * (NOT_SERVING until the database answers) and server reflection.
 */
export async function startServer(config: Config, log: Logger): Promise<RunningServer> {
  const db = openDatabase(config.database);
  const where = config.database.url ? 'postgres' : `embedded (PGlite in ${config.database.dataDir})`;
  try {
    await migrate(db);
  } catch (err) {
    await closeDatabase(db);
    throw err;
  }
  log.info('database migrated', { database: where });
  if (await autovacuumOff(db)) {
    log.warn('autovacuum is OFF on this Postgres: the usage tables, upserted on every charge, keep their dead rows and grow, and their statistics stay as they were when they were small, so the planner misjudges them. Turn autovacuum on, or run VACUUM ANALYZE regularly.');
  }
  log.info('transport', { tls: config.tls ? (config.tls.clientCaFile ? 'mutual' : 'server') : 'off', auth: config.authMode });
  if (config.authMode === 'off') log.warn('authentication is OFF (METERING_AUTH=off): every caller acts as the operator. For development only.');

  // Open server streams, so that shutdown can end them (and metrics count them).
  const streams = new OpenStreams();
  const metrics = config.metricsPort !== undefined ? new Metrics(db, () => streams.size) : undefined;
  const exposition = metrics && config.metricsPort !== undefined ? await metrics.serve(config.host, config.metricsPort) : undefined;
  if (exposition) log.info('metrics', { address: `${config.host}:${exposition.port}`, metrics_port: exposition.port, path: '/metrics' });
  const tracing = config.tracing ? Tracing.start(process.env.OTEL_SERVICE_NAME || 'metering') : undefined;
  if (tracing) log.info('tracing', { exporter: 'otlp/http' });

  // WatchCharges subscribers wake on NOTIFY from any process writing to this database (LISTEN while there are any here).
  const notifier = new EventNotifier((wake) => listen(db, EVENTS_CHANNEL, wake, (err) => log.warn('event listener', { error: String(err) })));

  const server = new Server({
    // Both ways the limit gRPC clients have by default: RecordCharges refuses a batch whose answer could be larger.
    'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
    // A peer that is gone without closing its connection (a crashed host, a dropped network)
    // would otherwise hold its streams open for hours.
    'grpc.keepalive_time_ms': config.keepaliveMs,
    'grpc.keepalive_timeout_ms': config.keepaliveTimeoutMs,
  });
  const methods = meteringMethods(db, {
    writeConcurrency: config.writeConcurrency,
    authMode: config.authMode,
    operatorKey: config.operatorKey,
    metrics,
    events: { notifier, open: streams, slowMs: config.streamSlowMs, pollMs: config.eventPollMs },
    webhookAllow: config.webhooks.allowedHosts,
  });
  const telemetry: Telemetry = { service: SERVICE_NAME, metrics, tracing };
  server.addService(checkedService(MeteringServiceService, SERVICE_NAME), meteringService(methods, log, telemetry));
  const health = new Health(['', SERVICE_NAME]);
  server.addService(HealthService, health.implementation());
  new ReflectionService(reflectionPackage()).addToServer(server);

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${config.host}:${config.port}`, serverCredentials(config), (err, p) => (err ? reject(err) : resolve(p))),
  );

  let http: HttpServer | undefined;
  if (config.httpPort !== undefined) {
    http = await serveHttp(config, config.httpPort, methods, log, telemetry);
    const url = `${config.tls ? 'https' : 'http'}://${config.host.includes(':') ? `[${config.host}]` : config.host}:${http.port}/`;
    log.info('http', { address: `${config.host}:${http.port}`, http_port: http.port, protocol: 'connect', dashboard: url });
  }

  let serving: boolean | undefined;
  const setServing = (ok: boolean) => {
    if (ok === serving) return;
    serving = ok;
    health.set(ok);
    log.info(ok ? 'serving' : 'not serving: the database does not answer', { host: config.host, port });
  };
  const probe = async () => {
    try {
      await db.raw('select 1');
      setServing(true);
    } catch {
      setServing(false);
    }
  };
  await probe();
  const timer = setInterval(probe, config.healthIntervalMs);
  timer.unref();

  // Background sweeps, in every process, each never overlapping itself: expired reservations
  // free their holds without any caller (SKIP LOCKED keeps processes apart), and events past
  // the outbox retention are deleted.
  const sweeps: NodeJS.Timeout[] = [];
  const every = (ms: number, sweep: string, done: string, task: () => Promise<number>) => {
    let running = false;
    const t = setInterval(() => {
      if (running || serving === false) return;
      running = true;
      task()
        .then((n) => n > 0 && log.info(done, { count: n }))
        .catch((err: unknown) => log.warn(`${sweep} failed`, { error: String(err) }))
        .finally(() => (running = false));
    }, ms);
    t.unref();
    sweeps.push(t);
  };
  const reservations = new ReservationsService(db);
  every(config.reservationSweepMs, 'reservation sweep', 'reservations expired', () => reservations.expireAllDue());
  // Grants past their expiry release their remainder the same way (and lazily, when read or locked).
  const credits = new CreditsService(db);
  every(config.reservationSweepMs, 'grant expiry sweep', 'grants expired', () => credits.expireAllDue());
  // Webhook deliveries (alerts): claimed with SKIP LOCKED and a lease, so every process takes its share.
  const dispatcher = new WebhookDispatcher(db, { ...config.webhooks, allow: config.webhooks.allowedHosts, onAttempt: (ok) => metrics?.webhookAttempt(ok) }, log);
  every(config.webhooks.pollMs, 'webhook dispatch', 'webhook attempts started', () => dispatcher.sweep());
  const alertSweep = new AlertsService(db, config.webhooks.allowedHosts);
  every(config.webhooks.periodSweepMs, 'alert period sweep', 'alerts resolved at the end of their period', () => alertSweep.resolveEndedPeriods());
  if (config.eventRetentionSeconds > 0) {
    every(config.eventPruneMs, 'event retention sweep', 'events pruned', async () => {
      const n = await pruneEvents(db, config.eventRetentionSeconds);
      metrics?.eventsPruned(n);
      return n;
    });
  }

  let stopping: Promise<void> | undefined;
  const shutdown = () =>
    (stopping ??= (async () => {
      clearInterval(timer);
      for (const t of sweeps) clearInterval(t);
      serving = false;
      health.set(false);
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          log.warn('grace period over: cutting remaining calls', { grace_ms: config.shutdownGraceMs });
          server.forceShutdown();
          resolve();
        }, config.shutdownGraceMs);
        // New calls are refused from here; accepted ones run to completion. Health Watch
        // subscribers, told NOT_SERVING above, and WatchCharges subscribers (UNAVAILABLE with
        // their cursor, to resume elsewhere) have their streams ended so they do not hold the
        // server open.
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
        health.endWatches();
        streams.closeAll();
      });
      await http?.close();
      await dispatcher.stop();
      await notifier.close();
      await closeDatabase(db);
      await new Promise((resolve) => (exposition ? exposition.server.close(resolve) : resolve(undefined)));
      await tracing?.shutdown();
      log.info('stopped');
    })());
  return { port, httpPort: http?.port, db, health, shutdown };
}
