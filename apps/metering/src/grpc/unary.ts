import { Metadata, type sendUnaryData, type ServerUnaryCall, status } from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../logger';
import type { Metrics } from '../observability/metrics';
import { Tracing } from '../observability/tracing';
import { toServiceError } from './errors';

/**
 * Wraps a promise-returning handler as a grpc-js unary handler: a request id
 * (from `x-request-id` metadata or new) echoed in the response headers, one
 * structured log line per call, its metrics and trace span, errors mapped in
 * one place, and the callback called exactly once.
 */
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

export function unary<Req, Res>(method: string, log: Logger, handle: (req: Req, metadata: Metadata) => Promise<Res>, telemetry?: Telemetry) {
  return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>): void => {
    const requestId = acceptCall(call);
    const started = process.hrtime.bigint();
    const ms = () => Number(process.hrtime.bigint() - started) / 1e6;
    const span = telemetry?.tracing?.startCall(telemetry.service, method, requestId, call.metadata);
    const observe = (code: status) => {
      telemetry?.metrics?.rpc(method, status[code], ms() / 1000);
      if (span) Tracing.end(span, code, status[code]);
    };
    Promise.resolve()
      .then(() => {
        return handle(call.request, call.metadata);
      })
      .then(
        (response) => {
          log.debug('rpc', { method, request_id: requestId, code: 'OK', duration_ms: ms() });
          observe(status.OK);
          callback(null, response);
        },
        (err: unknown) => {
          const e = toServiceError(err, requestId);
          const fields = { method, request_id: requestId, code: status[e.code], duration_ms: ms() };
          if (e.internal) log.error('rpc failed', { ...fields, error: err instanceof Error ? err.stack : String(err) });
          else log.info('rpc rejected', { ...fields, message: e.details });
          observe(e.code);
          callback(e);
        },
      );
  };
}
