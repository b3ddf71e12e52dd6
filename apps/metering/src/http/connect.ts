import { type DescMethod, fromBinary, type Message, toBinary } from '@bufbuild/protobuf';
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from '@connectrpc/connect';
import { Metadata, status } from '@grpc/grpc-js';
import { messageDesc, MeteringServiceService, meteringServiceDesc } from '@metering/contracts';
import type { Logger } from '../logger';
import { toRpcStatus } from '../grpc/errors';
import type { OpenStreams, StreamControl } from '../grpc/stream';
import { observeCall } from '../grpc/observe';
import { requestIdOf, type Telemetry } from '../grpc/unary';
import type { MeteringMethods } from '../server';

/**
 * MeteringService over the Connect protocol (HTTP/1.1 and HTTP/2, JSON or binary protobuf; unary
 * and server streaming), for browsers and `curl`. Every RPC runs the very functions the gRPC
 * server runs (authentication, the policy table, handler -> service -> store): this file only
 * converts. A request arrives as a @bufbuild/protobuf message built from the contract's
 * descriptors, is re-read as the generated (ts-proto) request, and the answer goes back the same
 * way; errors are the same google.rpc.Status, its details as Connect error details (with their
 * JSON under "debug").
 */

type Method = keyof typeof MeteringServiceService;

/** The headers the RPCs read, as gRPC metadata reads them. */
const FORWARDED = ['authorization', 'x-request-id', 'traceparent', 'tracestate'];

/**
 * The call's headers as gRPC metadata: the same `authorization: Bearer <key>` and
 * `x-request-id`. A value gRPC metadata cannot carry (non-ASCII) is left out, as if not sent.
 */
function metadataOf(headers: Headers): Metadata {
  const md = new Metadata();
  for (const key of FORWARDED) {
    const value = headers.get(key);
    if (value === null) continue;
    try {
      md.set(key, value);
    } catch {
      // not a legal metadata value
    }
  }
  return md;
}

/** A domain error (or anything else, as INTERNAL) as a Connect error with the google.rpc details. */
export function toConnectError(err: unknown, requestId: string): ConnectError {
  if (err instanceof ConnectError) return err;
  const rpc = toRpcStatus(err, requestId);
  const details = rpc.details.map((any) => {
    const desc = messageDesc(any.typeUrl.replace('type.googleapis.com/', ''));
    return { desc, value: fromBinary(desc, any.value) };
  });
  return new ConnectError(rpc.message, rpc.code as unknown as Code, undefined, details);
}

interface Converters {
  name: string;
  toRequest(message: Message): unknown;
  fromResponse(response: unknown): Message;
}

function converters(method: DescMethod): Converters {
  const def = MeteringServiceService[method.localName as Method];
  const deserialize = def.requestDeserialize as (b: Buffer) => unknown;
  const serialize = def.responseSerialize as (v: unknown) => Buffer;
  return {
    name: method.name,
    toRequest: (message) => deserialize(Buffer.from(toBinary(method.input, message))),
    fromResponse: (response) => fromBinary(method.output, serialize(response)),
  };
}

/** The start of a call: its request id (echoed in the response headers) and its telemetry (observe.ts), as on gRPC. */
function begin(kind: 'unary' | 'stream', name: string, ctx: HandlerContext, log: Logger, telemetry: Telemetry) {
  const metadata = metadataOf(ctx.requestHeader);
  const requestId = requestIdOf(metadata);
  ctx.responseHeader.set('x-request-id', requestId);
  return { metadata, requestId, end: observeCall(kind, name, requestId, metadata, log, telemetry, 'connect') };
}

/**
 * A push-style stream handler (write() resolving when the client has taken the message, false
 * after slowMs) as the pull-style async generator Connect reads: a message is handed over only
 * when Connect asks for the next, so a slow browser holds the handler back instead of a queue.
 */
async function* pull(
  run: (control: StreamControl) => Promise<void>,
  ctx: HandlerContext,
  opts: { slowMs: number; open: OpenStreams },
): AsyncGenerator<unknown> {
  const abort = new AbortController();
  const onAbort = () => abort.abort();
  ctx.signal.addEventListener('abort', onAbort);
  let closing = false;
  const forget = opts.open.add(() => {
    closing = true;
    abort.abort();
  });
  const queue: Array<{ message: unknown; taken: (read: boolean) => void }> = [];
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  let finished = false;
  let failure: { err: unknown } | undefined;
  const control: StreamControl = {
    signal: abort.signal,
    closing: () => closing,
    open: (extra) => {
      for (const [key, value] of Object.entries(extra)) ctx.responseHeader.set(key, value);
    },
    write: (message) =>
      new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), opts.slowMs);
        const done = () => abort.signal.removeEventListener('abort', onStop);
        const onStop = () => {
          clearTimeout(timer);
          done();
          resolve(true);
        };
        abort.signal.addEventListener('abort', onStop);
        queue.push({
          message,
          taken: (read) => {
            clearTimeout(timer);
            done();
            resolve(read);
          },
        });
        notify();
      }),
  };
  run(control).then(
    () => {
      finished = true;
      notify();
    },
    (err: unknown) => {
      failure = { err };
      finished = true;
      notify();
    },
  );
  try {
    for (;;) {
      const next = queue.shift();
      if (next) {
        yield next.message;
        next.taken(true);
        continue;
      }
      if (finished || abort.signal.aborted) break;
      await new Promise<void>((resolve) => (wake = resolve));
    }
    if (failure) throw failure.err;
  } finally {
    for (const pending of queue.splice(0)) pending.taken(true);
    forget();
    ctx.signal.removeEventListener('abort', onAbort);
    abort.abort();
  }
}

/** The Connect routes of MeteringService, over the same methods as the gRPC server. */
export function meteringRoutes(methods: MeteringMethods, log: Logger, telemetry: Telemetry) {
  return (router: ConnectRouter): void => {
    const impl: Record<string, unknown> = {};
    for (const method of meteringServiceDesc.methods) {
      const c = converters(method);
      if (method.methodKind === 'unary') {
        const handle = methods.unary[method.localName] as (req: unknown, metadata: Metadata) => Promise<unknown>;
        impl[method.localName] = async (message: Message, ctx: HandlerContext) => {
          const call = begin('unary', c.name, ctx, log, telemetry);
          try {
            const response = c.fromResponse(await handle(c.toRequest(message), call.metadata));
            call.end(status.OK);
            return response;
          } catch (err) {
            const e = toConnectError(err, call.requestId);
            call.end(e.code as unknown as status, err);
            throw e;
          }
        };
      } else if (method.methodKind === 'server_streaming') {
        const run = methods.streams[method.localName] as (req: unknown, metadata: Metadata, control: StreamControl) => Promise<void>;
        impl[method.localName] = async function* (message: Message, ctx: HandlerContext) {
          const call = begin('stream', c.name, ctx, log, telemetry);
          try {
            const request = c.toRequest(message);
            for await (const response of pull((control) => run(request, call.metadata, control), ctx, methods)) yield c.fromResponse(response);
            call.end(ctx.signal.aborted ? status.CANCELLED : status.OK);
          } catch (err) {
            const e = toConnectError(err, call.requestId);
            call.end(e.code as unknown as status, err);
            throw e;
          }
        };
      }
    }
    router.service(meteringServiceDesc, impl as never);
  };
}
