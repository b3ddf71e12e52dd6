import { type Metadata, type ServerWritableStream, status } from '@grpc/grpc-js';
import type { Logger } from '../logger';
import { toServiceError } from './errors';
import { observeCall } from './observe';
import { requestIdOf, sendHeaders, type Telemetry } from './unary';

/** Open server streams, so that shutdown can end them (they never end by themselves). */
export class OpenStreams {
  private readonly closers = new Set<() => void>();

  add(close: () => void): () => void {
    this.closers.add(close);
    return () => this.closers.delete(close);
  }

  get size(): number {
    return this.closers.size;
  }

  closeAll(): void {
    for (const close of [...this.closers]) close();
  }
}

export interface StreamControl {
  /** Aborted when the client cancels or the server shuts down. */
  signal: AbortSignal;
  /** True once shutdown asked the stream to end. */
  closing(): boolean;
  /** Sends the response headers (the request id and `extra`); the first write sends them if this was not called. */
  open(extra: Record<string, string>): void;
  /**
   * Writes one message, waiting for the client to read when its buffer is
   * full; resolves false when it did not read for `slowMs` (the stream should end).
   */
  write(message: unknown): Promise<boolean>;
}

/**
 * Wraps a server-streaming handler: a request id echoed in the headers, one
 * log line and metrics when the stream ends, flow control (a write waits for
 * the client to drain), cancellation and shutdown through an AbortSignal, and
 * errors mapped to a status in one place.
 */
export function serverStream<Req, Res>(
  method: string,
  log: Logger,
  run: (req: Req, metadata: Metadata, control: StreamControl) => Promise<void>,
  opts: { slowMs: number; open: OpenStreams; telemetry?: Telemetry },
) {
  return (call: ServerWritableStream<Req, Res>): void => {
    const requestId = requestIdOf(call.metadata);
    let opened = false;
    const open = (extra: Record<string, string> = {}) => {
      if (opened) return;
      opened = true;
      sendHeaders(call, requestId, extra);
    };
    const end = observeCall('stream', method, requestId, call.metadata, log, opts.telemetry);
    const abort = new AbortController();
    let closing = false;
    call.on('cancelled', () => abort.abort());
    const forget = opts.open.add(() => {
      closing = true;
      abort.abort();
    });
    const control: StreamControl = {
      signal: abort.signal,
      closing: () => closing,
      open,
      write: (message) => {
        open();
        opts.telemetry?.metrics?.streamMessage(method);
        if (call.write(message as Res)) return Promise.resolve(true);
        return new Promise((resolve) => {
          const done = (drained: boolean) => {
            clearTimeout(timer);
            call.off('drain', onDrain);
            abort.signal.removeEventListener('abort', onAbort);
            resolve(drained);
          };
          const onDrain = () => done(true);
          const onAbort = () => done(true);
          const timer = setTimeout(() => done(false), opts.slowMs);
          call.on('drain', onDrain);
          abort.signal.addEventListener('abort', onAbort);
        });
      },
    };
    const finish = (code: status, err?: unknown) => {
      open(); // the request id header, also for a stream that ends before it opened
      forget();
      end(code, err);
    };
    run(call.request, call.metadata, control).then(
      () => {
        finish(call.cancelled ? status.CANCELLED : status.OK);
        if (!call.cancelled) call.end();
      },
      (err: unknown) => {
        if (call.cancelled) return finish(status.CANCELLED);
        const e = toServiceError(err, requestId);
        finish(e.code, e.internal ? err : undefined);
        call.emit('error', e);
      },
    );
  };
}
