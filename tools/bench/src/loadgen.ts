/**
 * The load generator: a separate process (forked by bench.ts) that drives one
 * workload through the generated grpc-js client and reports throughput and an
 * HDR histogram of latencies. Fixed concurrency (closed loop) or fixed rate
 * (open loop: latency counts from the scheduled start, so queueing shows).
 */
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { MeteringServiceClient, RecordChargeRequest } from '@metering/contracts';
import { latencyMs, newHistogram } from './latency';
import { chargeRequest, LoadResult, Workload } from './workload';

async function run(w: Workload): Promise<LoadResult> {
  // Several channels, as several backend instances would have.
  const clients = Array.from({ length: Math.min(4, Math.max(1, w.concurrency)) }, () => new MeteringServiceClient(w.address, credentials.createInsecure()));
  const histogram = newHistogram();
  const result: LoadResult = { calls: 0, errors: 0, errorCodes: {}, elapsedMs: 0, throughput: 0, latencyMs: { p50: 0, p99: 0, p999: 0, max: 0, mean: 0 }, acked: [], replays: 0, replayedOk: 0 };
  const sent: RecordChargeRequest[] = [];
  let seq = 0;
  const user = () => (w.users === 1 ? 'hot-user' : `u${Math.floor(Math.random() * w.users)}`);
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${w.apiKey}`);
  const unary = <Req, Res>(fn: (req: Req, md: Metadata, opts: object, cb: (e: ServiceError | null, r: Res) => void) => unknown, client: MeteringServiceClient, req: Req) =>
    new Promise<Res>((resolve, reject) => fn.call(client, req, metadata, { deadline: Date.now() + 30_000 }, (e, r) => (e ? reject(e) : resolve(r))));

  const one = async (client: MeteringServiceClient): Promise<number> => {
    switch (w.method) {
      case 'recordCharge': {
        if (sent.length > 0 && Math.random() < w.replayShare) {
          result.replays++;
          const res = await unary(client.recordCharge, client, sent[Math.floor(Math.random() * sent.length)]);
          if (res.replayed) result.replayedOk++;
          return 1;
        }
        const req = chargeRequest(w.accountId, user(), `${w.keyPrefix}-${process.pid}-${seq++}`, w.dimensions);
        const res = await unary(client.recordCharge, client, req);
        if (res.charge) result.acked.push(res.charge.chargeId);
        if (w.replayShare > 0 && sent.length < 10_000) sent.push(req);
        return 1;
      }
      case 'recordCharges': {
        const charges = Array.from({ length: w.batchSize }, () => chargeRequest(w.accountId, user(), `${w.keyPrefix}-${process.pid}-${seq++}`));
        const res = await unary(client.recordCharges, client, { charges });
        for (const r of res.results) if (r.result?.$case === 'recorded' && r.result.value.charge) result.acked.push(r.result.value.charge.chargeId);
        return w.batchSize;
      }
      case 'checkLimits':
        await unary(client.checkLimits, client, {
          accountId: w.accountId, userId: user(), additionalTokens: '1500', additionalCost: undefined, reserve: false, idempotencyKey: '', estimate: undefined, holdSeconds: 0, denyAsError: false, tags: {},
        });
        return 1;
      case 'getDailyUsage': {
        const end = new Date();
        const start = new Date(end.getTime() - 29 * 86_400_000);
        const day = (d: Date) => d.toISOString().slice(0, 10);
        await unary(client.getDailyUsage, client, { accountId: w.accountId, startDate: day(start), endDate: day(end), userId: '', provider: '', model: '', chargeType: 0, pageSize: 100, pageToken: '', timeZone: '' });
        return 1;
      }
      case 'queryUsage': {
        const end = new Date();
        const start = new Date(end.getTime() - 29 * 86_400_000);
        const day = (d: Date) => d.toISOString().slice(0, 10);
        const q = w.query ?? { groupBy: [], groupByTags: [], granularity: 2 };
        await unary(client.queryUsage, client, {
          accountId: w.accountId, startDate: day(start), endDate: day(end), groupBy: q.groupBy, groupByTags: q.groupByTags, granularity: q.granularity,
          userId: '', provider: '', model: '', chargeType: 0, apiKeyId: '', tagFilters: {}, pageSize: 1000, pageToken: '',
        });
        return 1;
      }
    }
  };

  if (w.dimensions) await unary(clients[0].setDimensions, clients[0], { accountId: w.accountId, tagKeys: w.dimensions, maxValuesPerDay: 0 });
  // Warm up first (channels connected, code compiled, pools filled); only calls started after it count.
  let units = 0;
  let measuring = false;
  const timed = async (client: MeteringServiceClient, startedAt: bigint) => {
    try {
      const n = await one(client);
      if (!measuring) return;
      units += n;
      result.calls++;
      histogram.recordValue(Math.max(1, Number((process.hrtime.bigint() - startedAt) / 1000n)));
    } catch (e) {
      result.errors++;
      const code = String((e as ServiceError).code ?? 'unknown');
      result.errorCodes[code] = (result.errorCodes[code] ?? 0) + 1;
    }
  };

  const warmup = Date.now() + w.warmupMs;
  await Promise.all(
    Array.from({ length: Math.min(w.concurrency, 16) }, async (_, i) => {
      while (Date.now() < warmup) await timed(clients[i % clients.length], process.hrtime.bigint());
    }),
  );
  measuring = true;
  // Tells the benchmark the measured window starts (it samples the server's CPU time here and at the end).
  process.send?.({ phase: 'measuring' });
  const t0 = process.hrtime.bigint();
  const deadline = Date.now() + w.durationMs;
  if (w.rate) {
    const interval = 1e9 / w.rate;
    const inFlight = new Set<Promise<void>>();
    for (let n = 0; Date.now() < deadline; n++) {
      const due = t0 + BigInt(Math.round(n * interval));
      const wait = Number(due - process.hrtime.bigint()) / 1e6;
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const p: Promise<void> = timed(clients[n % clients.length], due).then(() => void inFlight.delete(p));
      if (inFlight.size >= 10_000) await Promise.race(inFlight);
      inFlight.add(p);
    }
    await Promise.all(inFlight);
  } else {
    await Promise.all(
      Array.from({ length: w.concurrency }, async (_, i) => {
        while (Date.now() < deadline) await timed(clients[i % clients.length], process.hrtime.bigint());
      }),
    );
  }
  result.elapsedMs = Number(process.hrtime.bigint() - t0) / 1e6;
  result.throughput = units / (result.elapsedMs / 1000);
  result.latencyMs = latencyMs(histogram);
  for (const c of clients) c.close();
  return result;
}

process.once('message', (w: Workload) => {
  run(w).then(
    (r) => process.send?.(r, () => process.exit(0)),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
});
