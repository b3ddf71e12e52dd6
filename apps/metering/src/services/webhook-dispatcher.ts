import { addressAllowed, AllowList, DeliveryAttempt, LedgerEvent, nextAttemptTime, RetryPolicy, slackBody, TEST_EVENT_TYPE } from '@metering/domain';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { Webhook } from 'standardwebhooks';
import type { Logger } from '../logger';
import { ClaimedDelivery, claimDue, disableEndpoint, finishAttempt, insertAttempt } from '../store/alerts.repo';
import { Db, inTransaction } from '../store/db';
import { appendEvents } from '../store/events.repo';

export interface DispatcherOptions {
  retry: RetryPolicy;
  /** One attempt (connect, request, answer) ends after this many ms. */
  timeoutMs: number;
  /** An answer's body is read up to this many bytes; past that the connection is cut (the status still counts). */
  maxResponseBytes: number;
  /** At most this many attempts in flight per process. */
  concurrency: number;
  allow: AllowList;
  clock?: () => Date;
  /** Told about every attempt (metrics). */
  onAttempt?: (delivered: boolean) => void;
}

/** At most this much of an answer is logged. */
export const EXCERPT_BYTES = 1024;

interface Outcome {
  httpStatus: number;
  error: string;
  excerpt: string;
}

/**
 * The webhook dispatcher of one server process (every process runs one, like
 * the reservation sweeper): claims due deliveries (SKIP LOCKED, with a lease:
 * store/alerts.repo.ts claimDue), posts each, signed as Standard Webhooks
 * specifies (the standardwebhooks package), with a timeout and a bound on the
 * answer read, logs the attempt, and schedules the next one
 * (libs/domain retry schedule) or gives up after the retry window, disabling
 * the endpoint and telling its account on the charge stream. At least once:
 * a process that dies mid-attempt leaves the delivery to another when its
 * lease ends; every attempt carries the same webhook-id.
 */
export class WebhookDispatcher {
  private readonly inFlight = new Set<Promise<void>>();
  private readonly clock: () => Date;
  private stopped = false;

  constructor(
    private readonly db: Db,
    private readonly opts: DispatcherOptions,
    private readonly log?: Logger,
  ) {
    this.clock = opts.clock ?? (() => new Date());
  }

  /** How long a claimed attempt keeps other processes off its delivery: the attempt's timeout, and as long again to log it. */
  get leaseMs(): number {
    return 2 * this.opts.timeoutMs + 1000;
  }

  /** Claims what is due (up to the free concurrency) and starts the attempts; returns how many started. */
  async sweep(): Promise<number> {
    const free = this.opts.concurrency - this.inFlight.size;
    if (this.stopped || free <= 0) return 0;
    const claimed = await claimDue(this.db, this.clock(), this.leaseMs, free);
    for (const d of claimed) {
      const p = this.deliver(d)
        .catch((err: unknown) => this.log?.warn('webhook attempt not logged', { delivery_id: d.deliveryId, error: String(err) }))
        .finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
    }
    return claimed.length;
  }

  /** Stops claiming and waits for the attempts in flight (each ends within its timeout). */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.inFlight]);
  }

  /** One attempt of a claimed delivery, logged with its outcome in one transaction. */
  private async deliver(d: ClaimedDelivery): Promise<void> {
    const start = this.clock();
    const outcome = await this.post(d, start);
    const end = this.clock();
    const latencyMs = Math.max(0, end.getTime() - start.getTime());
    const success = outcome.httpStatus >= 200 && outcome.httpStatus < 300;
    // The schedule counts from the attempt's logged end (start + latency).
    const next = success ? undefined : nextAttemptTime(this.opts.retry, d.attemptCount, d.deliveryId, new Date(start.getTime() + latencyMs), d.windowStart);
    const attempt: DeliveryAttempt = {
      deliveryId: d.deliveryId, attempt: d.attemptCount, startTime: start, latencyMs, httpStatus: outcome.httpStatus,
      error: outcome.error, responseExcerpt: outcome.excerpt, success, nextAttemptTime: next,
    };
    // Counted as made before it is logged (an attempt whose log fails was still made).
    this.opts.onAttempt?.(success);
    await inTransaction(this.db, async (tx) => {
      await insertAttempt(tx, d.accountId, attempt);
      const changed = await finishAttempt(tx, d.accountId, d.deliveryId, d.attemptCount, success ? { delivered: true } : { delivered: false, next });
      if (success || next || !changed || d.eventType === TEST_EVENT_TYPE) return;
      // Failed for good: the endpoint is disabled, and its account told on the charge stream (the last write).
      const reason = `a delivery (${d.deliveryId}) still failed after ${d.attemptCount} attempts within the retry window: ${describe(outcome)}`;
      const endpoint = await disableEndpoint(tx, d.accountId, d.endpointId, reason.slice(0, 1000), end);
      if (endpoint) await appendEvents(tx, [{ kind: 'webhook_endpoint_disabled', endpoint } satisfies LedgerEvent]);
    });
    this.log?.info('webhook attempt', { delivery_id: d.deliveryId, attempt: d.attemptCount, http_status: outcome.httpStatus, error: outcome.error || undefined, latency_ms: latencyMs });
  }

  /** Posts the body, signed: resolves with the status (0 when none) and why it failed, never rejects. */
  private post(d: ClaimedDelivery, at: Date): Promise<Outcome> {
    const body = d.format === 'slack' ? slackBody(d.payload) : d.payload;
    let url: URL;
    try {
      url = new URL(d.url);
    } catch {
      return Promise.resolve({ httpStatus: 0, error: 'bad URL', excerpt: '' });
    }
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const allow = this.opts.allow;
    if (isIP(host) && !addressAllowed(host, host, allow)) return Promise.resolve({ httpStatus: 0, error: `destination not allowed: ${host}`, excerpt: '' });
    // Every address the host resolves to is checked, and the connection goes to the one checked (no second lookup to rebind).
    const lookup: LookupFunction = (hostname, options, callback) =>
      dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
        if (err) return callback(err, '', 0);
        const bad = addresses.find((a) => !addressAllowed(a.address, hostname, allow));
        if (bad || addresses.length === 0) return callback(Object.assign(new Error(`destination not allowed: ${hostname} resolves to ${bad?.address ?? 'nothing'}`), { code: 'EDESTINATION' }), '', 0);
        if ((options as { all?: boolean }).all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
        callback(null, addresses[0].address, addresses[0].family);
      });
    let signature: string;
    try {
      signature = new Webhook(d.secret).sign(d.deliveryId, at, body);
    } catch (err) {
      return Promise.resolve({ httpStatus: 0, error: `cannot sign: ${String(err)}`, excerpt: '' });
    }
    const headers = {
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
      'user-agent': 'metering-webhooks',
      'webhook-id': d.deliveryId,
      'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
      'webhook-signature': signature,
    };
    return new Promise<Outcome>((resolve) => {
      let settled = false;
      let status = 0;
      const chunks: Buffer[] = [];
      let read = 0;
      const excerpt = () => Buffer.concat(chunks).subarray(0, EXCERPT_BYTES).toString('utf8');
      const done = (error: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        req.destroy();
        resolve({ httpStatus: status, error, excerpt: excerpt() });
      };
      const client = url.protocol === 'https:' ? https : http;
      const req = client.request(url, { method: 'POST', headers, lookup, agent: false }, (res) => {
        status = res.statusCode ?? 0;
        res.on('data', (chunk: Buffer) => {
          read += chunk.length;
          if (read - chunk.length < EXCERPT_BYTES) chunks.push(chunk);
          if (read > this.opts.maxResponseBytes) done(`response larger than ${this.opts.maxResponseBytes} bytes (cut)`);
        });
        res.on('end', () => done(''));
        res.on('error', (err) => done(errorText(err)));
        res.on('close', () => done(res.complete ? '' : 'connection closed'));
      });
      const timer = setTimeout(() => done(`timeout after ${this.opts.timeoutMs} ms`), this.opts.timeoutMs);
      req.on('error', (err) => done(errorText(err)));
      req.end(body);
    });
  }
}

function errorText(err: Error & { code?: string }): string {
  if (err.code === 'EDESTINATION') return err.message;
  if (err.code === 'ECONNRESET' || err.message === 'socket hang up') return 'connection closed';
  if (err.code === 'ECONNREFUSED') return 'connection refused';
  return err.code ? `${err.code}: ${err.message}` : err.message;
}

const describe = (o: Outcome) => (o.httpStatus ? `HTTP ${o.httpStatus}` : o.error);
