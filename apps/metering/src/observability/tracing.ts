import { propagation, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, type Tracer } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import type { Metadata } from '@grpc/grpc-js';

/**
 * OpenTelemetry tracing, off unless METERING_TRACING=otlp: one server span
 * per RPC (rpc.system grpc, rpc.method, the status code, the request id),
 * continuing the caller's trace when it sends W3C `traceparent` metadata,
 * exported over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT (or
 * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), as the OpenTelemetry SDKs configure it.
 */
export class Tracing {
  private constructor(
    private readonly provider: TracerProvider,
    private readonly tracer: Tracer,
  ) {}

  static start(serviceName: string): Tracing {
    const provider = new TracerProvider({
      resource: resourceFromAttributes({ 'service.name': serviceName }),
      spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter(), scheduledDelayMillis: 500 })],
    });
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    return new Tracing(provider, provider.getTracer('metering'));
  }

  /** A server span for one call, child of the caller's span when metadata carries one. */
  startCall(service: string, method: string, requestId: string, metadata: Metadata): Span {
    const carrier: Record<string, string> = {};
    for (const name of ['traceparent', 'tracestate']) {
      const v = metadata.get(name)[0];
      if (typeof v === 'string') carrier[name] = v;
    }
    const parent = propagation.extract(ROOT_CONTEXT, carrier);
    return this.tracer.startSpan(
      `${service}/${method}`,
      { kind: SpanKind.SERVER, attributes: { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method, 'metering.request_id': requestId } },
      parent,
    );
  }

  static end(span: Span, code: number, codeName: string): void {
    span.setAttribute('rpc.grpc.status_code', code);
    if (code !== 0) span.setStatus({ code: SpanStatusCode.ERROR, message: codeName });
    span.end();
  }

  /** Exports what is buffered and stops. */
  shutdown(): Promise<void> {
    return this.provider.shutdown();
  }
}
