/**
 * The charge stream under load: `subscribers` WatchCharges streams on one
 * account while RecordCharge runs at a fixed rate, all through the generated
 * client in this process, so one clock times both ends. Latency counts from
 * the moment a RecordCharge is sent: to its acknowledgement, and to its
 * event's arrival at each subscriber. Then every subscriber must have received
 * every acknowledged charge once, in sequence order 1, 2, 3, ...
 */
import { credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { MeteringServiceClient, WatchChargesRequest, WatchChargesResponse } from '@metering/contracts';
import { Histogram, latencyMs, newHistogram, recordMs } from './latency';
import { chargeRequest, LoadResult } from './workload';

export interface StreamDelivery {
  ack: LoadResult;
  delivery: LoadResult;
  /** Subscribers that received exactly the acknowledged charges, once each, in sequence order. */
  complete: number;
}

function summary(h: Histogram, calls: number, elapsedMs: number, extra: Partial<LoadResult> = {}): LoadResult {
  return { calls, errors: 0, errorCodes: {}, elapsedMs, throughput: calls / (elapsedMs / 1000), acked: [], replays: 0, replayedOk: 0, latencyMs: latencyMs(h), ...extra };
}

export async function streamDelivery(address: string, apiKey: string, o: { subscribers: number; rate: number; durationMs: number; accountId: string }): Promise<StreamDelivery> {
  const metadata = new Metadata();
  metadata.set('authorization', `Bearer ${apiKey}`);
  const writer = new MeteringServiceClient(address, credentials.createInsecure());
  const readers = Array.from({ length: o.subscribers }, () => new MeteringServiceClient(address, credentials.createInsecure()));
  const sentAt = new Map<string, number>();
  const acks = newHistogram();
  const deliveries = newHistogram();
  const received: string[][] = readers.map(() => []);
  const sequences: string[][] = readers.map(() => []);
  let streamErrors = 0;
  const streams = readers.map((client, i) => {
    const stream = client.watchCharges(WatchChargesRequest.fromPartial({ accountId: o.accountId, afterSequence: '0' }), metadata);
    stream.on('data', (r: WatchChargesResponse) => {
      const event = r.event;
      if (!event?.charge) return;
      const sent = sentAt.get(event.charge.idempotencyKey);
      if (sent !== undefined) recordMs(deliveries, performance.now() - sent);
      received[i].push(event.charge.chargeId);
      sequences[i].push(event.sequence);
    });
    stream.on('error', (e: ServiceError) => {
      if (e.code !== status.CANCELLED) streamErrors++; // cancelling is how the run ends them
    });
    return stream;
  });

  const acked: string[] = [];
  let errors = 0;
  const t0 = performance.now();
  const inFlight: Promise<void>[] = [];
  for (let n = 0; performance.now() - t0 < o.durationMs; n++) {
    const wait = t0 + (n * 1000) / o.rate - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const req = chargeRequest(o.accountId, `u${n % 100}`, `stream-${process.pid}-${n}`);
    const sent = performance.now();
    sentAt.set(req.idempotencyKey, sent);
    inFlight.push(
      new Promise<void>((resolve) =>
        writer.recordCharge(req, metadata, { deadline: Date.now() + 30_000 }, (e, res) => {
          if (e || !res.charge) errors++;
          else {
            recordMs(acks, performance.now() - sent);
            acked.push(res.charge.chargeId);
          }
          resolve();
        }),
      ),
    );
  }
  await Promise.all(inFlight);
  const elapsedMs = performance.now() - t0;
  // Every subscriber gets every acknowledged charge, or 10 s pass in which no subscriber gets
  // anything more (a loaded machine delivers late, not never: a fixed deadline failed such a run).
  let seen = -1;
  let until = 0;
  for (;;) {
    const got = received.reduce((n, r) => n + r.length, 0);
    if (!received.some((r) => r.length < acked.length)) break;
    if (got !== seen) [seen, until] = [got, Date.now() + 10_000];
    else if (Date.now() >= until) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  for (const s of streams) s.cancel();
  for (const c of [writer, ...readers]) c.close();

  const want = [...acked].sort().join();
  const complete = received.filter((r, i) => r.length === acked.length && [...r].sort().join() === want && sequences[i].every((s, n) => s === String(n + 1))).length;
  return {
    ack: summary(acks, acked.length, elapsedMs, { errors, acked }),
    delivery: summary(deliveries, received.reduce((n, r) => n + r.length, 0), elapsedMs, { errors: streamErrors }),
    complete,
  };
}
