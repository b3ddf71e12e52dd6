import { type ServiceError, status } from '@grpc/grpc-js';
import { ErrorInfo, QuotaFailure, type QuotaFailure_Violation, type RecordChargeRequest, type RecordChargeResponse, type Reservation, Status, UsageFormat } from '@metering/contracts';
import { randomUUID } from 'node:crypto';
import type { DeepPartial, MeteringClient } from './index';

/**
 * Capture without code: the official `openai` and `@anthropic-ai/sdk` clients, metered.
 *
 *   const openai = meterOpenAI(new OpenAI(), { metering, userId: 'u1' });
 *   const completion = await openai.chat.completions.create({ model: 'gpt-4o', max_tokens: 800, messages });
 *
 * Each metered call (chat.completions.create, responses.create, messages.create; streams too)
 * 1. reserves the call's expected usage (CheckLimits with reserve; the estimate is the request's
 *    model, its max tokens and its input at ~4 characters a token), and a denied budget throws
 *    BudgetExceededError before any request reaches the provider;
 * 2. calls the provider (the SDK's own method, unchanged);
 * 3. records the provider's usage object as it came (RecordCharge with usage + usage_format)
 *    against the reservation, with the provider's response id (chatcmpl-..., resp_..., msg_...)
 *    or the caller's key as the idempotency key: a retried record is a replay, never a second charge;
 * and releases the reservation when the provider call throws or a stream is abandoned before
 * its usage arrived. A metering outage follows `outage` (see RecordQueue and the README's
 * "Capture without code"). The SDKs are not dependencies of this package: the wrappers are typed
 * structurally and return the client's own type.
 */

/** A budget said no: thrown before the provider is called. */
export class BudgetExceededError extends Error {
  override readonly name = 'BudgetExceededError';
  constructor(
    message: string,
    /** ErrorInfo's reason: LIMIT_EXCEEDED, or BALANCE_INSUFFICIENT for prepaid credits. */
    readonly reason: string,
    /** The google.rpc.QuotaFailure violations: each hard limit that denies (subject "account:A/user:U/day/cost"). */
    readonly violations: QuotaFailure_Violation[],
    /** ErrorInfo's metadata. */
    readonly metadata: Record<string, string>,
  ) {
    super(message);
  }
}

/** Metering could not be reached to reserve, under `outage: 'fail-closed'` (or with the retry queue full): the provider was not called. */
export class MeteringUnavailableError extends Error {
  override readonly name = 'MeteringUnavailableError';
  constructor(message: string, override readonly cause?: unknown) {
    super(message);
  }
}

/**
 * The provider call happened but its charge could not be kept: the server refused it (not an
 * outage: `cause` says why), or it could not be reached and the retry queue was full.
 * `charge` is the RecordCharge request (persist it and send it later: its idempotency key makes
 * that safe) and `result` what the provider answered.
 */
export class MeteringRecordError extends Error {
  override readonly name = 'MeteringRecordError';
  constructor(message: string, readonly charge: PendingCharge, readonly result: unknown, override readonly cause?: unknown) {
    super(message);
  }
}

/** A RecordCharge request waiting in the queue (plain JSON: persist it as it is). */
export type PendingCharge = DeepPartial<RecordChargeRequest> & Pick<RecordChargeRequest, 'userId' | 'provider' | 'model' | 'idempotencyKey'>;

/** gRPC codes that mean "metering is not answering now", not "metering said no". */
const OUTAGE = new Set([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.ABORTED, status.CANCELLED, status.UNKNOWN, status.INTERNAL]);
const isOutage = (err: unknown) => typeof (err as ServiceError)?.code === 'number' && typeof (err as ServiceError).details === 'string' && OUTAGE.has((err as ServiceError).code);

export interface RecordQueueOptions {
  /** Charges held at most (default 1000). When full, a charge that cannot be recorded throws MeteringRecordError and new calls are refused while metering is down. */
  maxSize?: number;
  /** First wait before a background retry, ms (default 1000); doubles up to maxRetryMs. */
  retryMs?: number;
  /** Longest wait between background retries, ms (default 30000). */
  maxRetryMs?: number;
  /** Told each charge the queue recorded. */
  onRecorded?: (response: RecordChargeResponse, charge: PendingCharge) => void;
  /** Told each charge the server refused (not an outage): it leaves the queue and is kept in rejected(). */
  onRejected?: (error: unknown, charge: PendingCharge) => void;
}

/**
 * The local retry queue of fail-open metering: charges whose RecordCharge failed because the server
 * could not be reached, in memory, bounded, retried in the background (a timer that does not keep
 * the process alive) with the same idempotency keys, so a charge that did reach the server before
 * the failure is answered as a replay and never counted twice. `flush()` records what is held now;
 * `pending()` shows it. What is still held when the process exits is lost unless you persist
 * `pending()` (in a shutdown hook, after `flush()`) and `enqueue()` it again on the next start.
 */
export class RecordQueue {
  private readonly held: PendingCharge[] = [];
  private readonly refused: Array<{ charge: PendingCharge; error: unknown }> = [];
  private readonly maxSize: number;
  private readonly retryMs: number;
  private readonly maxRetryMs: number;
  private timer?: NodeJS.Timeout;
  private wait: number;
  private draining?: Promise<void>;

  constructor(private readonly metering: MeteringClient, private readonly options: RecordQueueOptions = {}) {
    this.maxSize = Math.max(1, options.maxSize ?? 1000);
    this.retryMs = Math.max(1, options.retryMs ?? 1000);
    this.maxRetryMs = Math.max(this.retryMs, options.maxRetryMs ?? 30_000);
    this.wait = this.retryMs;
  }

  /** Charges held now. */
  get size(): number {
    return this.held.length;
  }

  get full(): boolean {
    return this.held.length >= this.maxSize;
  }

  /** Copies of the charges held, oldest first (plain JSON). */
  pending(): PendingCharge[] {
    return structuredClone(this.held);
  }

  /** Charges the server refused while retrying (not an outage), with why. */
  rejected(): Array<{ charge: PendingCharge; error: unknown }> {
    return [...this.refused];
  }

  /** Holds a charge for retrying; false (not held) when the queue is full. */
  enqueue(charge: PendingCharge): boolean {
    if (this.full) return false;
    this.held.push(structuredClone(charge));
    this.schedule();
    return true;
  }

  /** Tries every held charge now, in order; stops at the first outage. What was recorded and what is still held. */
  async flush(): Promise<{ recorded: number; remaining: number }> {
    const before = this.held.length;
    await this.drain();
    return { recorded: before - this.held.length, remaining: this.held.length };
  }

  /** Stops the background retries (held charges stay in pending()). */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer || this.held.length === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.drain().then(() => {
        this.wait = this.held.length ? Math.min(this.maxRetryMs, this.wait * 2) : this.retryMs;
        this.schedule();
      });
    }, this.wait * (0.5 + Math.random() / 2));
    this.timer.unref();
  }

  /** One pass over the held charges at a time (flush and the timer share it). */
  private drain(): Promise<void> {
    this.draining ??= (async () => {
      try {
        while (this.held.length) {
          const charge = this.held[0];
          try {
            const response = await this.metering.recordCharge(charge);
            this.held.shift();
            this.options.onRecorded?.(response, charge);
          } catch (err) {
            if (isOutage(err)) return;
            this.held.shift();
            this.refused.push({ charge, error: err });
            this.options.onRejected?.(err, charge);
          }
        }
      } finally {
        this.draining = undefined;
      }
    })();
    return this.draining;
  }
}

/** One queue per MeteringClient unless the options name one. */
const queues = new WeakMap<MeteringClient, RecordQueue>();
/** The retry queue the wrappers of this MeteringClient use by default (made on first use, default options). */
export function recordQueueOf(metering: MeteringClient): RecordQueue {
  let queue = queues.get(metering);
  if (!queue) queues.set(metering, (queue = new RecordQueue(metering)));
  return queue;
}

export interface MeterOptions {
  metering: MeteringClient;
  /** The user the calls are charged to. */
  userId: string;
  /** The account; empty (default) means the API key's own. */
  accountId?: string;
  /**
   * The record's idempotency key, for one call: by default the provider's response id
   * (chatcmpl-..., resp_..., msg_...). Give your own only to a wrapper used for one call.
   */
  idempotencyKey?: string;
  /**
   * What a metering outage does (default 'fail-open'): fail-open calls the provider unreserved
   * when metering cannot be reached and keeps the charge in the retry queue; fail-closed throws
   * MeteringUnavailableError before any provider request. Either way a charge whose call already
   * happened goes to the queue rather than being dropped.
   */
  outage?: 'fail-open' | 'fail-closed';
  /** The retry queue (default: recordQueueOf(metering)). */
  queue?: RecordQueue;
  /** Seconds until an unsettled hold frees itself (server default 600). */
  holdSeconds?: number;
  /** Output tokens to reserve when the request sets no maximum (OpenAI's max_tokens is optional); default 4096. */
  defaultMaxTokens?: number;
  /** Your own estimate instead of the request's (characters / 4 and max tokens). */
  estimate?: (body: Record<string, unknown>) => { promptTokens: number; completionTokens: number };
  /** Told the reservation each call holds (absent when a fail-open call went unreserved). */
  onReserved?: (reservation: Reservation) => void;
  /** Told each charge recorded by the call itself (queued ones: RecordQueueOptions.onRecorded). */
  onRecorded?: (response: RecordChargeResponse) => void;
}

interface Spec {
  provider: 'openai' | 'anthropic';
  format: UsageFormat;
  /** Text standing for the input, for the estimate. */
  input: unknown;
  maxTokens: number | undefined;
  /** Reads a stream's events: id, model and the usage object (merged, for Anthropic's). */
  observe: (event: Record<string, unknown>, seen: Seen) => void;
}

interface Seen {
  id?: string;
  model?: string;
  usage?: Record<string, unknown>;
  /** The usage is the call's final one (the event that ends the stream carried it). */
  final?: boolean;
}

type Provider = (body: Record<string, unknown>, options?: unknown) => unknown;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown) => (typeof v === 'string' && v ? v : undefined);
const count = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.ceil(v) : undefined);

function details(err: ServiceError): { info?: ErrorInfo; quota?: QuotaFailure } {
  const bin = err.metadata?.get('grpc-status-details-bin')[0];
  if (!Buffer.isBuffer(bin)) return {};
  const out: { info?: ErrorInfo; quota?: QuotaFailure } = {};
  for (const any of Status.decode(bin).details) {
    if (any.typeUrl === 'type.googleapis.com/google.rpc.ErrorInfo') out.info = ErrorInfo.decode(any.value);
    if (any.typeUrl === 'type.googleapis.com/google.rpc.QuotaFailure') out.quota = QuotaFailure.decode(any.value);
  }
  return out;
}

class Meter {
  constructor(private readonly options: MeterOptions) {}

  private get queue(): RecordQueue {
    return this.options.queue ?? recordQueueOf(this.options.metering);
  }

  /** Step 1: the hold, or undefined (fail-open during an outage). */
  async reserve(spec: Spec, body: Record<string, unknown>): Promise<string | undefined> {
    const o = this.options;
    const guess = o.estimate?.(body) ?? {
      promptTokens: Math.ceil((JSON.stringify(spec.input ?? '') ?? '').length / 4),
      completionTokens: (spec.maxTokens ?? o.defaultMaxTokens ?? 4096) * Math.max(1, count(body.n) ?? 1),
    };
    try {
      const check = await o.metering.checkLimits({
        accountId: o.accountId ?? '',
        userId: o.userId,
        reserve: true,
        idempotencyKey: randomUUID(),
        denyAsError: true,
        holdSeconds: o.holdSeconds ?? 0,
        estimate: { provider: spec.provider, model: String(body.model ?? ''), promptTokens: String(Math.ceil(guess.promptTokens)), completionTokens: String(Math.ceil(guess.completionTokens)) },
      });
      if (!check.allowed) throw new BudgetExceededError(check.message, 'LIMIT_EXCEEDED', [], {});
      if (check.reservation) o.onReserved?.(check.reservation);
      return check.reservation?.reservationId || undefined;
    } catch (err) {
      const e = err as ServiceError;
      if (e.code === status.RESOURCE_EXHAUSTED) {
        const { info, quota } = details(e);
        if (info || quota) throw new BudgetExceededError(e.details || e.message, info?.reason ?? '', quota?.violations ?? [], info?.metadata ?? {});
      }
      if (!isOutage(err)) throw err;
      if (o.outage === 'fail-closed') throw new MeteringUnavailableError(`metering unavailable (fail-closed): ${e.details || e.message}`, err);
      if (this.queue.full) throw new MeteringUnavailableError(`metering unavailable and its retry queue is full (${this.queue.size} charges held)`, err);
      return undefined;
    }
  }

  /** Step 3: the charge; queued on an outage. */
  async record(spec: Spec, body: Record<string, unknown>, reservationId: string | undefined, seen: Seen, result: unknown): Promise<void> {
    const o = this.options;
    const charge: PendingCharge = {
      accountId: o.accountId ?? '',
      userId: o.userId,
      provider: spec.provider,
      model: seen.model ?? String(body.model ?? ''),
      idempotencyKey: o.idempotencyKey ?? seen.id ?? `reservation:${reservationId ?? randomUUID()}`,
      usage: seen.usage,
      usageFormat: spec.format,
      reservationId: reservationId ?? '',
    };
    let recorded: RecordChargeResponse;
    try {
      // Not `o.onRecorded?.(await ...)`: optional chaining skips its arguments, so without the
      // callback the charge was never sent (the outage test, whose wrapper has no onRecorded, caught it).
      recorded = await o.metering.recordCharge(charge);
    } catch (err) {
      if (!isOutage(err)) throw new MeteringRecordError(`the charge was refused: ${(err as ServiceError).details || (err as Error).message}`, charge, result, err);
      if (!this.queue.enqueue(charge)) throw new MeteringRecordError(`metering unavailable and its retry queue is full: the charge was not kept`, charge, result, err);
      return;
    }
    o.onRecorded?.(recorded);
  }

  /** Frees a hold; a release that fails is left to the hold's expiry. */
  async release(reservationId: string | undefined): Promise<void> {
    if (!reservationId) return;
    await this.options.metering.releaseReservation(this.options.accountId ?? '', reservationId).catch(() => undefined);
  }

  /** reserve -> call -> record (or release), for a call or a stream. */
  run(spec: Spec, call: Provider, body: Record<string, unknown>, options: unknown): MeteredCall {
    return new MeteredCall(async () => {
      const reservationId = await this.reserve(spec, body);
      let answer: { data: unknown; response?: unknown; request_id?: unknown };
      try {
        const pending = call(body, options) as PromiseLike<unknown> & { withResponse?: () => Promise<{ data: unknown; response?: unknown; request_id?: unknown }> };
        answer = typeof pending?.withResponse === 'function' ? await pending.withResponse() : { data: await pending };
      } catch (err) {
        await this.release(reservationId);
        throw err;
      }
      const data = answer.data as Record<string, unknown>;
      if (body.stream === true) {
        this.meterStream(spec, body, reservationId, data);
        return answer;
      }
      const seen: Seen = { id: str(data?.id), model: str(data?.model), usage: isObject(data?.usage) ? data.usage : undefined };
      if (!seen.usage) {
        await this.release(reservationId);
        throw new MeteringRecordError('the provider answered without a usage object: nothing recorded', { userId: this.options.userId, provider: spec.provider, model: String(body.model), idempotencyKey: seen.id ?? '' }, data);
      }
      await this.record(spec, body, reservationId, seen, data);
      return answer;
    });
  }

  /** Wraps the SDK stream's iterator in place: the caller reads the same object; its end records, its abandonment releases. */
  private meterStream(spec: Spec, body: Record<string, unknown>, reservationId: string | undefined, stream: Record<string, unknown>): void {
    const seen: Seen = {};
    const controller = stream.controller as AbortController | undefined;
    const hasIterator = typeof stream.iterator === 'function';
    const inner = (hasIterator ? (stream.iterator as () => AsyncIterator<unknown>).bind(stream) : (stream as unknown as AsyncIterable<unknown>)[Symbol.asyncIterator].bind(stream)) as () => AsyncIterator<unknown>;
    let settled = false;
    const finish = async (ended: boolean) => {
      if (settled) return;
      settled = true;
      if (seen.usage && seen.final) return this.record(spec, body, reservationId, seen, seen);
      await this.release(reservationId);
      // A stream that ran to its end without a usage object (and was not aborted) would go unbilled: say so.
      if (ended && !controller?.signal?.aborted) {
        throw new MeteringRecordError('the stream ended without a usage object: nothing recorded', { userId: this.options.userId, provider: spec.provider, model: String(body.model), idempotencyKey: seen.id ?? '' }, seen);
      }
    };
    async function* metered(): AsyncGenerator<unknown> {
      let ended = false;
      try {
        const it = inner();
        for (;;) {
          const next = await it.next();
          if (next.done) break;
          if (isObject(next.value)) spec.observe(next.value, seen);
          yield next.value;
        }
        ended = true;
      } finally {
        // Read to the end, or left early (break, an abort, an error): record the final usage if it came, else release.
        await finish(ended);
      }
    }
    if (hasIterator) stream.iterator = metered;
    else Object.defineProperty(stream, Symbol.asyncIterator, { value: metered, configurable: true });
  }
}

/**
 * What a metered create() returns: a promise of the SDK's answer (the completion, or the stream to
 * iterate) with the SDK's `withResponse()`. The provider request starts when it is awaited.
 */
class MeteredCall implements PromiseLike<unknown> {
  private started?: Promise<{ data: unknown; response?: unknown; request_id?: unknown }>;
  constructor(private readonly start: () => Promise<{ data: unknown; response?: unknown; request_id?: unknown }>) {}

  private run() {
    return (this.started ??= this.start());
  }

  then<A = unknown, B = never>(ok?: ((value: unknown) => A | PromiseLike<A>) | null, fail?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<A | B> {
    return this.run().then((r) => r.data).then(ok, fail);
  }

  catch<B = never>(fail?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<unknown> {
    return this.then(undefined, fail);
  }

  finally(done?: (() => void) | null): Promise<unknown> {
    return this.run().then((r) => r.data).finally(done);
  }

  /** The SDK's { data, response, request_id }. */
  withResponse() {
    return this.run();
  }

  /** Not available: the metered call reads the body itself. */
  asResponse(): Promise<never> {
    return Promise.reject(new TypeError('asResponse() is not metered: use the call itself or withResponse()'));
  }
}

const inputOf = (body: Record<string, unknown>, ...keys: string[]) => keys.map((k) => body[k]).filter((v) => v !== undefined);

const OPENAI_CHAT: Spec = {
  provider: 'openai',
  format: UsageFormat.USAGE_FORMAT_OPENAI_CHAT,
  input: undefined,
  maxTokens: undefined,
  observe(chunk, seen) {
    seen.id ??= str(chunk.id);
    seen.model ??= str(chunk.model);
    // The last chunk (empty choices) carries the usage of the whole call.
    if (isObject(chunk.usage)) [seen.usage, seen.final] = [chunk.usage, true];
  },
};

const OPENAI_RESPONSES: Spec = {
  provider: 'openai',
  format: UsageFormat.USAGE_FORMAT_OPENAI_RESPONSES,
  input: undefined,
  maxTokens: undefined,
  observe(event, seen) {
    const response = event.response;
    if (!isObject(response)) return;
    seen.id ??= str(response.id);
    seen.model ??= str(response.model);
    // response.completed, .incomplete and .failed carry the usage of what was generated.
    if (isObject(response.usage)) [seen.usage, seen.final] = [response.usage, true];
  },
};

const ANTHROPIC_MESSAGES: Spec = {
  provider: 'anthropic',
  format: UsageFormat.USAGE_FORMAT_ANTHROPIC_MESSAGES,
  input: undefined,
  maxTokens: undefined,
  observe(event, seen) {
    // message_start: the message's id, model and usage (input and cache counts, output so far);
    // message_delta: the usage's cumulative counts, which replace those it carries.
    if (event.type === 'message_start' && isObject(event.message)) {
      seen.id ??= str(event.message.id);
      seen.model ??= str(event.message.model);
      if (isObject(event.message.usage)) seen.usage = { ...event.message.usage };
    } else if (event.type === 'message_delta' && isObject(event.usage)) {
      const update = Object.fromEntries(Object.entries(event.usage).filter(([, v]) => v !== null && v !== undefined));
      [seen.usage, seen.final] = [{ ...(seen.usage ?? {}), ...update }, true];
    }
  },
};

type Route = (call: Provider, body: Record<string, unknown>, options: unknown) => unknown;

/** A view of the client whose routed methods are metered; everything else is the client's own. */
function wrapClient<C extends object>(client: C, routes: Record<string, Route>): C {
  const paths = Object.keys(routes);
  const proxies = new WeakMap<object, object>();
  const wrap = (target: object, path: string): object => {
    const known = proxies.get(target);
    if (known) return known;
    const proxy = new Proxy(target, {
      get(t, prop) {
        // A resource's helpers (Anthropic's messages.stream()) reach the client through this._client
        // and create() through this: both lead back here, so they are metered too.
        if (prop === '_client' && path) return root;
        const value = Reflect.get(t, prop, t) as unknown;
        if (typeof prop !== 'string') return typeof value === 'function' && !path ? value.bind(t) : value;
        const here = path ? `${path}.${prop}` : prop;
        const route = routes[here];
        if (route && typeof value === 'function') return (body: Record<string, unknown>, options?: unknown) => route((b, o) => (value as Provider).call(t, b, o), body ?? {}, options);
        // The client's own methods use private fields: they run on the client itself.
        if (typeof value === 'function') return path ? value : value.bind(t);
        if (isObject(value) && paths.some((p) => p.startsWith(`${here}.`))) return wrap(value, here);
        return value;
      },
    });
    proxies.set(target, proxy);
    return proxy;
  };
  const root = wrap(client, '') as C;
  return root;
}

/** The OpenAI client's shape the wrapper needs (the official `openai` package's `OpenAI`). */
export interface OpenAILike {
  chat: { completions: { create(body: never, options?: never): unknown } };
  responses?: { create(body: never, options?: never): unknown };
}

/** The Anthropic client's shape the wrapper needs (the official `@anthropic-ai/sdk` package's `Anthropic`). */
export interface AnthropicLike {
  messages: { create(body: never, options?: never): unknown };
}

/**
 * The OpenAI client with chat.completions.create and responses.create metered (streams included:
 * a chat stream is asked for its usage with stream_options.include_usage).
 */
export function meterOpenAI<C extends OpenAILike>(client: C, options: MeterOptions): C {
  const meter = new Meter(options);
  return wrapClient(client, {
    'chat.completions.create': (call, body, opts) => {
      const sent = body.stream === true ? { ...body, stream_options: { ...(isObject(body.stream_options) ? body.stream_options : {}), include_usage: true } } : body;
      return meter.run({ ...OPENAI_CHAT, input: inputOf(body, 'messages'), maxTokens: count(body.max_completion_tokens) ?? count(body.max_tokens) }, call, sent, opts);
    },
    'responses.create': (call, body, opts) => meter.run({ ...OPENAI_RESPONSES, input: inputOf(body, 'instructions', 'input'), maxTokens: count(body.max_output_tokens) }, call, body, opts),
  });
}

/** The Anthropic client with messages.create metered (streams included, and messages.stream() that goes through it). */
export function meterAnthropic<C extends AnthropicLike>(client: C, options: MeterOptions): C {
  const meter = new Meter(options);
  return wrapClient(client, {
    'messages.create': (call, body, opts) => meter.run({ ...ANTHROPIC_MESSAGES, input: inputOf(body, 'system', 'messages', 'tools'), maxTokens: count(body.max_tokens) }, call, body, opts),
  });
}
