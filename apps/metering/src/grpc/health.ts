import { type ServerWritableStream, status } from '@grpc/grpc-js';
import { HealthCheckRequest, HealthCheckResponse, HealthCheckResponse_ServingStatus as Serving, HealthServer } from '@metering/contracts';

/**
 * grpc.health.v1 (Check and Watch) for the server ('') and its services. Its
 * own implementation rather than a library's so that shutdown can tell Watch
 * subscribers NOT_SERVING and then end their streams: a server waits for open
 * streams, and a subscriber must not hold a shutting-down server open.
 */
export class Health {
  private serving = false;
  private readonly watchers = new Set<{ service: string; call: ServerWritableStream<HealthCheckRequest, HealthCheckResponse> }>();

  constructor(private readonly services: string[]) {}

  private statusOf(service: string): Serving {
    if (!this.services.includes(service)) return Serving.SERVICE_UNKNOWN;
    return this.serving ? Serving.SERVING : Serving.NOT_SERVING;
  }

  /** Sets every service SERVING or NOT_SERVING and tells the Watch subscribers. */
  set(serving: boolean): void {
    if (serving === this.serving) return;
    this.serving = serving;
    for (const w of this.watchers) w.call.write({ status: this.statusOf(w.service) });
  }

  /** Ends every Watch stream (after set(false) told them NOT_SERVING). */
  endWatches(): void {
    for (const w of this.watchers) w.call.end();
    this.watchers.clear();
  }

  implementation(): HealthServer {
    return {
      check: (call, callback) => {
        const s = this.statusOf(call.request.service);
        if (s === Serving.SERVICE_UNKNOWN) callback({ code: status.NOT_FOUND, details: `unknown service "${call.request.service}"` });
        else callback(null, { status: s });
      },
      watch: (call) => {
        const watcher = { service: call.request.service, call };
        this.watchers.add(watcher);
        call.on('cancelled', () => this.watchers.delete(watcher));
        call.write({ status: this.statusOf(watcher.service) });
      },
    };
  }
}
