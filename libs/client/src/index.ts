import { ChannelCredentials, credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import {
  ChargeEvent,
  CheckLimitsRequest,
  CheckLimitsResponse,
  ErrorInfo,
  ExportChargesRequest,
  ExportChargesResponse,
  MAX_MESSAGE_BYTES,
  meteringServiceDesc,
  MeteringServiceClient,
  MeteringServiceService,
  RecordChargeRequest,
  RecordChargeResponse,
  RecordChargesResponse,
  ReleaseReservationResponse,
  Status,
  WatchChargesRequest,
  WatchChargesResponse,
} from '@metering/contracts';
import * as contracts from '@metering/contracts';
import { randomUUID } from 'node:crypto';
import { checkRequest } from './validate';

export { checkRequest, MeteringRequestError } from './validate';
// Capture without code: the OpenAI and Anthropic SDKs metered (reserve -> call -> record).
export * from './llm';
// The contract's messages and enums (ChargeEvent, RecordChargeRequest, UsageFormat...): the installed package carries them.
export * from '@metering/contracts';

/**
 * The Metering client for TypeScript backends. Promise-based and typed by
 * the generated contract; every call has a deadline; retry-safe failures
 * (UNAVAILABLE, ABORTED, DEADLINE_EXCEEDED) are retried with backoff, and
 * writes are retried with the same idempotency key (made here when the caller
 * gives none), so a retry can never record a charge twice. WatchCharges is an
 * async iterator that resumes from its last sequence after a disconnect.
 */

type Methods = typeof MeteringServiceService;
type Method = keyof Methods;
type RequestOf<M extends Method> = Parameters<Methods[M]['requestSerialize']>[0];
type ResponseOf<M extends Method> = ReturnType<Methods[M]['responseDeserialize']>;

type Builtin = Date | ((...args: never[]) => unknown) | Uint8Array | string | number | boolean | bigint | undefined;
/** A request with every field optional, nested ones too (what the generated fromPartial takes). */
export type DeepPartial<T> = T extends Builtin ? T : T extends Array<infer U> ? Array<DeepPartial<U>> : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : Partial<T>;

/** Each method's request message: its full name (for the client's checks) and its generated fromPartial. */
const requestTypes = new Map(
  meteringServiceDesc.methods.map((m) => [m.localName, { typeName: m.input.typeName, fromPartial: (contracts as unknown as Record<string, { fromPartial(o: unknown): unknown }>)[m.input.name]?.fromPartial }]),
);

export interface MeteringClientOptions {
  /** host:port of the server, e.g. "metering.internal:50051". */
  address: string;
  /** An API key, sent as `authorization: Bearer <key>`. */
  apiKey?: string;
  /** TLS: true for the system roots, or PEM buffers (a CA, and a client certificate for mutual TLS). */
  tls?: boolean | { ca?: Buffer; cert?: Buffer; key?: Buffer };
  /** Deadline of each attempt, in ms (default 5000). */
  deadlineMs?: number;
  /** Attempts per call, the first included (default 4); backoff doubles from 50 ms up to 2 s, with jitter. */
  attempts?: number;
}

/** RPCs a client must not retry on its own: a second attempt would do it twice. */
const NOT_RETRIED = new Set<Method>(['createApiKey', 'createAlertRule', 'createWebhookEndpoint', 'rotateWebhookSecret', 'sendTestEvent']);
const RETRY_CODES = new Set([status.UNAVAILABLE, status.ABORTED, status.DEADLINE_EXCEEDED]);

/** The google.rpc.ErrorInfo of a failed call (reason, metadata), if the server sent one. */
export function errorInfo(err: ServiceError): ErrorInfo | undefined {
  const bin = err.metadata?.get('grpc-status-details-bin')[0];
  if (!Buffer.isBuffer(bin)) return undefined;
  const any = Status.decode(bin).details.find((d) => d.typeUrl === 'type.googleapis.com/google.rpc.ErrorInfo');
  return any ? ErrorInfo.decode(any.value) : undefined;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class MeteringClient {
  readonly stub: MeteringServiceClient;
  private readonly deadlineMs: number;
  private readonly attempts: number;
  private readonly apiKey?: string;

  constructor(options: MeteringClientOptions) {
    const tls = options.tls;
    const creds: ChannelCredentials = !tls ? credentials.createInsecure() : tls === true ? credentials.createSsl() : credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null);
    // The server's limits: it accepts requests and sends answers of at most MAX_MESSAGE_BYTES.
    this.stub = new MeteringServiceClient(options.address, creds, {
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
    });
    this.deadlineMs = options.deadlineMs ?? 5000;
    this.attempts = Math.max(1, options.attempts ?? 4);
    this.apiKey = options.apiKey;
  }

  private metadata(): Metadata {
    const md = new Metadata();
    if (this.apiKey) md.set('authorization', `Bearer ${this.apiKey}`);
    return md;
  }

  /**
   * Any unary RPC by name, with the deadline and the retries. Fields left out are the
   * contract's defaults. A value the wire cannot carry (a fractional token count) throws
   * MeteringRequestError naming the field, before anything is sent.
   */
  async call<M extends Method>(method: M, partial: DeepPartial<RequestOf<M>>, track?: { retried: boolean }): Promise<ResponseOf<M>> {
    const def = MeteringServiceService[method];
    if (def.responseStream) throw new Error(`${method} is a stream: use watchCharges()`);
    const type = requestTypes.get(method);
    if (type) checkRequest(type.typeName, partial);
    const request = (type?.fromPartial ? type.fromPartial(partial) : partial) as RequestOf<M>;
    let last: ServiceError | undefined;
    const attempts = NOT_RETRIED.has(method) ? 1 : this.attempts;
    for (let attempt = 0; attempt < attempts; attempt++) {
      if (attempt > 0) {
        if (track) track.retried = true;
        await sleep(Math.min(2000, 50 * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2));
      }
      try {
        return await new Promise<ResponseOf<M>>((resolve, reject) =>
          this.stub.makeUnaryRequest(
            def.path,
            def.requestSerialize as (v: RequestOf<M>) => Buffer,
            def.responseDeserialize as (b: Buffer) => ResponseOf<M>,
            request,
            this.metadata(),
            { deadline: Date.now() + this.deadlineMs },
            (err: ServiceError | null, res?: ResponseOf<M>) => (err ? reject(err) : resolve(res as ResponseOf<M>)),
          ),
        );
      } catch (err) {
        last = err as ServiceError;
        if (!RETRY_CODES.has(last.code)) break;
      }
    }
    throw last;
  }

  /** Records an LLM call. Without an idempotency key, one is made and reused by every retry. */
  recordCharge(request: DeepPartial<RecordChargeRequest> & Pick<RecordChargeRequest, 'userId' | 'provider' | 'model'>): Promise<RecordChargeResponse> {
    return this.call('recordCharge', { idempotencyKey: randomUUID(), ...request });
  }

  /** Records up to 1000 charges in one call (each with its own key, made when missing). */
  recordCharges(charges: Array<DeepPartial<RecordChargeRequest>>): Promise<RecordChargesResponse> {
    return this.call('recordCharges', { charges: charges.map((c) => ({ idempotencyKey: randomUUID(), ...c })) });
  }

  /** Checks limits; with `reserve: true` holds the expected usage (an idempotency key is made when missing). */
  checkLimits(request: DeepPartial<CheckLimitsRequest> & Pick<CheckLimitsRequest, 'userId'>): Promise<CheckLimitsResponse> {
    const key = request.reserve && !request.idempotencyKey ? { idempotencyKey: randomUUID() } : {};
    return this.call('checkLimits', { ...request, ...key });
  }

  /**
   * Voids a held reservation. When an attempt failed in transit and its retry
   * finds the reservation released, that release was this call's: answered as
   * a success. A second release by the caller stays FAILED_PRECONDITION.
   */
  async releaseReservation(accountId: string, reservationId: string): Promise<ReleaseReservationResponse> {
    const track = { retried: false };
    try {
      return await this.call('releaseReservation', { accountId, reservationId }, track);
    } catch (err) {
      if (!track.retried || errorInfo(err as ServiceError)?.reason !== 'RESERVATION_RELEASED') throw err;
      const { reservation } = await this.call('getReservation', { accountId, reservationId });
      return { reservation };
    }
  }

  /**
   * The account's events as an async iterator, from after `afterSequence`
   * (unset: from now on). After a disconnect, a server shutdown or a
   * too-slow end it reconnects with backoff from the last sequence received
   * (or, before the first event, from where the server started the stream):
   * no event is missed or repeated. Ends when `signal` aborts. `onStart` is
   * told the sequence each (re)connected stream starts after.
   */
  async *watchCharges(request: DeepPartial<WatchChargesRequest>, signal?: AbortSignal, onStart?: (afterSequence: string) => void): AsyncGenerator<ChargeEvent> {
    let cursor = request.afterSequence;
    let failures = 0;
    while (!signal?.aborted) {
      const stream = this.stub.watchCharges(WatchChargesRequest.fromPartial({ ...request, afterSequence: cursor }), this.metadata());
      // Where the stream starts: for one started "from now", the cursor before its first event.
      stream.once('metadata', (headers: Metadata) => {
        const start = headers.get('x-start-after-sequence')[0];
        if (typeof start !== 'string') return;
        cursor ??= start;
        onStart?.(start);
      });
      const onAbort = () => stream.cancel();
      signal?.addEventListener('abort', onAbort);
      try {
        for await (const message of stream as AsyncIterable<WatchChargesResponse>) {
          const event = message.event;
          if (!event || (cursor !== undefined && BigInt(event.sequence) <= BigInt(cursor))) continue;
          cursor = event.sequence;
          failures = 0;
          yield event;
        }
      } catch (err) {
        const e = err as ServiceError;
        if (signal?.aborted || e.code === status.CANCELLED) return;
        if (!RETRY_CODES.has(e.code) && e.code !== status.INTERNAL) throw e;
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
      await sleep(Math.min(2000, 50 * 2 ** failures++));
    }
  }

  /**
   * An export of charges (CSV or JSON lines) as its chunks, in order: write each to a file as it
   * comes. Not retried (a second attempt would start the file again); ends when `signal` aborts.
   */
  async *exportCharges(request: DeepPartial<ExportChargesRequest>, signal?: AbortSignal): AsyncGenerator<ExportChargesResponse> {
    const stream = this.stub.exportCharges(ExportChargesRequest.fromPartial(request), this.metadata());
    const onAbort = () => stream.cancel();
    signal?.addEventListener('abort', onAbort);
    try {
      for await (const chunk of stream as AsyncIterable<ExportChargesResponse>) yield chunk;
    } catch (err) {
      if (signal?.aborted && (err as ServiceError).code === status.CANCELLED) return;
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  close(): void {
    this.stub.close();
  }
}
