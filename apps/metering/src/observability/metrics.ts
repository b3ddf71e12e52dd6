import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { createServer, type Server } from 'node:http';
import { onRollupRowsInserted, type Db } from '../store/db';

/**
 * Prometheus metrics, served as text on GET /metrics of their own HTTP port:
 * RPCs by method and code (count, latency), the database pool, write
 * transactions (duration, charges per batch), charges recorded by pricing
 * status, reservations held, server streams (open, messages sent), events
 * pruned, rollup rows inserted (daily_usage, dimension_usage) and charges
 * refused by a dimension's limit of values per day, and the process (CPU,
 * memory, event loop).
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly rpcs = new Counter({ name: 'metering_rpc_requests_total', help: 'RPCs answered, by method and status code.', labelNames: ['method', 'code'], registers: [this.registry] });
  private readonly rpcSeconds = new Histogram({
    name: 'metering_rpc_duration_seconds',
    help: 'RPC latency from call to answer, by method and status code.',
    labelNames: ['method', 'code'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  private readonly txSeconds = new Histogram({
    name: 'metering_write_transaction_duration_seconds',
    help: 'Duration of RecordCharge(s) write transactions, by outcome.',
    labelNames: ['outcome'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  private readonly batchSize = new Histogram({
    name: 'metering_write_batch_charges',
    help: 'Charges written per transaction (group commit batch size).',
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
    registers: [this.registry],
  });
  private readonly recorded = new Counter({ name: 'metering_charges_recorded_total', help: 'Charges stored (not replays), by pricing status.', labelNames: ['pricing_status'], registers: [this.registry] });
  private readonly streamMessages = new Counter({ name: 'metering_stream_messages_total', help: 'Messages written to server streams (WatchCharges: events), by method.', labelNames: ['method'], registers: [this.registry] });
  private readonly webhookAttempts = new Counter({
    name: 'metering_webhook_attempts_total',
    help: 'Webhook delivery attempts made by this process, by outcome (delivered, failed).',
    labelNames: ['outcome'],
    registers: [this.registry],
  });
  private readonly rollupRows = new Counter({
    name: 'metering_rollup_rows_inserted_total',
    help: 'Rows inserted (new keys, not updates) into the usage rollups by committed transactions of this process, by table (daily_usage, dimension_usage, dimension_usage_daily).',
    labelNames: ['table'],
    registers: [this.registry],
  });
  private readonly dimensionRefusals = new Counter({
    name: 'metering_dimension_values_refused_total',
    help: "Charges refused because a declared tag would add a value past its dimension's limit of distinct values per local day (RESOURCE_EXHAUSTED).",
    registers: [this.registry],
  });
  private readonly pruned = new Counter({ name: 'metering_events_pruned_total', help: 'Charge stream events deleted by the outbox retention sweep of this process.', registers: [this.registry] });

  /** `openStreams`: how many server streams are open now (read at scrape time). */
  constructor(db: Db, openStreams: () => number) {
    collectDefaultMetrics({ register: this.registry, prefix: 'metering_' });
    this.rollupRows.inc({ table: 'daily_usage' }, 0);
    this.rollupRows.inc({ table: 'dimension_usage' }, 0);
    this.rollupRows.inc({ table: 'dimension_usage_daily' }, 0);
    onRollupRowsInserted(db, (rows) => {
      if (rows.dailyUsage) this.rollupRows.inc({ table: 'daily_usage' }, rows.dailyUsage);
      if (rows.dimensionUsage) this.rollupRows.inc({ table: 'dimension_usage' }, rows.dimensionUsage);
      if (rows.dimensionUsageDaily) this.rollupRows.inc({ table: 'dimension_usage_daily' }, rows.dimensionUsageDaily);
    });
    type Pool = { numUsed(): number; numFree(): number; numPendingAcquires(): number };
    new Gauge({
      name: 'metering_db_pool_connections',
      help: 'Database pool connections: used, free, and acquires waiting.',
      labelNames: ['state'],
      registers: [this.registry],
      collect() {
        const p = (db.client as { pool?: Pool }).pool;
        this.set({ state: 'used' }, p?.numUsed() ?? 0);
        this.set({ state: 'free' }, p?.numFree() ?? 0);
        this.set({ state: 'pending' }, p?.numPendingAcquires() ?? 0);
      },
    });
    new Gauge({
      name: 'metering_streams_open',
      help: 'Server streams open in this process (WatchCharges subscribers).',
      registers: [this.registry],
      collect() {
        this.set(openStreams());
      },
    });
    new Gauge({
      name: 'metering_webhook_deliveries',
      help: 'Webhook deliveries by status: pending (to be attempted) and failed (given up; all accounts; read at scrape time).',
      labelNames: ['status'],
      registers: [this.registry],
      async collect() {
        const rows: Array<{ status: string; n: string }> = await db('webhook_deliveries').whereIn('status', ['pending', 'failed']).groupBy('status').select('status', db.raw('count(*) AS n'));
        for (const status of ['pending', 'failed']) this.set({ status }, Number(rows.find((r) => r.status === status)?.n ?? 0));
      },
    });
    new Gauge({
      name: 'metering_reservations_held',
      help: 'Reservations currently holding amounts against limits (all accounts; read at scrape time).',
      registers: [this.registry],
      async collect() {
        const row = await db('reservations').where('status', 'held').count<{ n: string }[]>('* as n').first();
        this.set(Number(row?.n ?? 0));
      },
    });
  }

  rpc(method: string, code: string, seconds: number): void {
    this.rpcs.inc({ method, code });
    this.rpcSeconds.observe({ method, code }, seconds);
  }

  streamMessage(method: string): void {
    this.streamMessages.inc({ method });
  }

  webhookAttempt(delivered: boolean): void {
    this.webhookAttempts.inc({ outcome: delivered ? 'delivered' : 'failed' });
  }

  eventsPruned(n: number): void {
    this.pruned.inc(n);
  }

  /** One write transaction of `charges` charges, of which `priced` and `unpriced` were new. */
  writeBatch(b: { charges: number; priced: number; unpriced: number; refused?: number; seconds: number; ok: boolean }): void {
    if (b.refused) this.dimensionRefusals.inc(b.refused);
    this.txSeconds.observe({ outcome: b.ok ? 'commit' : 'error' }, b.seconds);
    this.batchSize.observe(b.charges);
    if (b.priced) this.recorded.inc({ pricing_status: 'priced' }, b.priced);
    if (b.unpriced) this.recorded.inc({ pricing_status: 'unpriced' }, b.unpriced);
  }

  /** Serves GET /metrics on host:port; resolves with the bound port. */
  serve(host: string, port: number): Promise<{ server: Server; port: number }> {
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
        res.writeHead(404).end('not found: GET /metrics\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500).end(`metrics failed: ${String(err)}\n`),
      );
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve({ server, port: (server.address() as { port: number }).port }));
    });
  }
}
