import { type Metadata, status } from '@grpc/grpc-js';
import type { Logger } from '../logger';
import { Tracing } from '../observability/tracing';
import type { Telemetry } from './unary';

/**
 * One call's telemetry, the same on every transport (gRPC, and Connect for browsers and curl):
 * its trace span from the start (continuing the caller's `traceparent`), and when it ends its
 * metrics, the span's status and one log line. A unary call logs at debug when it succeeds, at
 * info when it is refused (a domain error) and at error with the stack when it failed; a stream
 * logs one "stream ended" line at info.
 */
export function observeCall(
  kind: 'unary' | 'stream',
  method: string,
  requestId: string,
  metadata: Metadata,
  log: Logger,
  telemetry: Telemetry | undefined,
  transport?: 'connect',
): (code: status, err?: unknown, message?: string) => void {
  const started = process.hrtime.bigint();
  const span = telemetry?.tracing?.startCall(telemetry.service, method, requestId, metadata);
  if (span && transport) span.setAttribute('rpc.transport', transport);
  return (code, err, message) => {
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    telemetry?.metrics?.rpc(method, status[code], ms / 1000);
    if (span) Tracing.end(span, code, status[code]);
    const fields = { method, ...(transport ? { transport } : {}), request_id: requestId, code: status[code], duration_ms: ms };
    const text = () => message ?? (err instanceof Error ? err.message : String(err));
    if (kind === 'stream') log.info('stream ended', { ...fields, ...(err !== undefined ? { error: text() } : {}) });
    else if (err === undefined) log.debug('rpc', fields);
    else if (code === status.INTERNAL) log.error('rpc failed', { ...fields, error: err instanceof Error ? err.stack : String(err) });
    else log.info('rpc rejected', { ...fields, message: text() });
  };
}
