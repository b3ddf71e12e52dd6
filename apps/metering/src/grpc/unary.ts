import { Metadata, type sendUnaryData, type ServerUnaryCall, status } from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../logger';
import type { Metrics } from '../observability/metrics';
import type { Tracing } from '../observability/tracing';
import { toServiceError } from './errors';
import { observeCall } from './observe';

/**
/** What every call reports to: metrics and traces (see observe.ts). */
export interface Telemetry {
  /** The service name spans carry, e.g. "metering.v1.MeteringService". */
  service: string;
  metrics?: Metrics;
  tracing?: Tracing;
}

/** The call's request id: the caller's `x-request-id`, or a new one. */
export function requestIdOf(metadata: Metadata): string {
  const given = metadata.get('x-request-id')[0];
  return typeof given === 'string' && given.length > 0 && given.length <= 128 ? given : randomUUID();
}

/** Sends the response headers: the request id and any `extra` ones. */
export function sendHeaders(call: { sendMetadata(headers: Metadata): void }, requestId: string, extra: Record<string, string> = {}): void {
  const headers = new Metadata();
  headers.set('x-request-id', requestId);
  for (const [key, value] of Object.entries(extra)) headers.set(key, value);
  call.sendMetadata(headers);
}

/** The call's request id, sent back in the response headers. */
export function acceptCall(call: { metadata: Metadata; sendMetadata(headers: Metadata): void }): string {
  const requestId = requestIdOf(call.metadata);
  sendHeaders(call, requestId);
  return requestId;
}

/**
 * Wraps a promise-returning handler as a grpc-js unary handler: a request id
 * (from `x-request-id` metadata or new) echoed in the response headers, the
 * call's telemetry (observe.ts), errors mapped in one place, and the callback
 * called exactly once.
 */
export function unary<Req, Res>(method: string, log: Logger, handle: (req: Req, metadata: Metadata) => Promise<Res>, telemetry?: Telemetry) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    const requestId = acceptCall(call);
    const end = observeCall('unary', method, requestId, call.metadata, log, telemetry);
    Promise.resolve()
      .then(() => handle(call.request, call.metadata))
      .then(
        (response) => {
          end(status.OK);
          callback(null, response);
        },
        (err: unknown) => {
          const e = toServiceError(err, requestId);
          end(e.code, err, e.details);
          callback(e);
        },
      );
  };
}
