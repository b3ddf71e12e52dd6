import type { Metadata } from '@grpc/grpc-js';
import { RecordChargeRequest, RecordChargesRequest, type RecordChargesResponse } from '@metering/contracts';
import { genAiUsageOf, type SpanAttributes } from '@metering/pricing';
import { MAX_BATCH } from './charges.service';

/** One received span, decoded from OTLP (protobuf or JSON) by http/otlp.ts. */
export interface OtlpSpan {
  /** Lowercase hex, as OTLP/JSON writes them (32 and 16 digits). */
  traceId: string;
  spanId: string;
  name: string;
  /** Nanoseconds since the epoch, as a decimal string (fixed64 on the wire). */
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  /** The span's attributes over its resource's. */
  attributes: SpanAttributes;
  /** OTLP status code 2 (ERROR) and its message. */
  error?: string;
}

export interface OtlpExportResult {
  /** Spans that were GenAI calls and are recorded (or were already: replays count too). */
  recorded: number;
  /** Spans refused, each for a reason in `errors` (the first few). */
  rejected: number;
  errors: string[];
}

type RecordCharges = (request: RecordChargesRequest, metadata: Metadata) => Promise<RecordChargesResponse>;

const NANOS_PER_MS = 1_000_000n;

/**
 * OpenTelemetry GenAI spans into charges. Each span whose attributes say a GenAI call with usage
 * (libs/pricing genai-spans.ts) becomes one RecordCharge with the idempotency key
 * `otel:<trace id>:<span id>`, so an exporter's retry (or the same span sent twice) records it
 * once. The spans go through RecordCharges, the very RPC (authentication by the request's API
 * key, its policy, validation, pricing; an unpriced model is recorded unpriced), at most
 * MAX_BATCH per call. Spans that are not GenAI calls are ignored; a GenAI span that cannot be
 * recorded (no user attribute, a bad count, a refusal of the server) is counted as rejected with
 * its reason, as OTLP's partial success reports it.
 */
export class OtlpService {
  constructor(
    private readonly recordCharges: RecordCharges,
    /** The span (or resource) attribute holding the user id (METERING_OTLP_USER_ATTRIBUTE). */
    private readonly userAttribute: string,
  ) {}

  async export(spans: OtlpSpan[], metadata: Metadata, accountId: string): Promise<OtlpExportResult> {
    const result: OtlpExportResult = { recorded: 0, rejected: 0, errors: [] };
    const reject = (span: OtlpSpan, why: string) => {
      result.rejected++;
      if (result.errors.length < 10) result.errors.push(`span ${span.spanId} of trace ${span.traceId}: ${why}`);
    };
    const charges: Array<{ span: OtlpSpan; request: Partial<RecordChargeRequest> }> = [];
    for (const span of spans) {
      const mapped = genAiUsageOf(span.attributes);
      if (mapped.kind === 'not_genai') continue;
      if (mapped.kind === 'problem') {
        reject(span, mapped.message);
        continue;
      }
      const user = span.attributes[this.userAttribute];
      if (typeof user !== 'string' && typeof user !== 'number') {
        reject(span, `no user: the attribute ${this.userAttribute} (METERING_OTLP_USER_ATTRIBUTE) is missing on the span and its resource`);
        continue;
      }
      if (!/^[0-9a-f]{32}$/.test(span.traceId) || !/^[0-9a-f]{16}$/.test(span.spanId) || /^0+$/.test(span.traceId) || /^0+$/.test(span.spanId)) {
        reject(span, 'a span needs a 16-byte trace id and an 8-byte span id (not all zero): they make its idempotency key');
        continue;
      }
      const u = mapped.usage;
      const start = BigInt(span.startTimeUnixNano || '0');
      const end = BigInt(span.endTimeUnixNano || '0');
      const endMs = end / NANOS_PER_MS;
      charges.push({
        span,
        request: {
          accountId,
          userId: String(user),
          idempotencyKey: `otel:${span.traceId}:${span.spanId}`,
          provider: u.provider,
          model: u.model,
          promptTokens: String(u.promptTokens),
          completionTokens: String(u.completionTokens),
          cachedPromptTokens: String(u.cachedPromptTokens),
          cacheWriteTokens: String(u.cacheWriteTokens),
          reasoningTokens: String(u.reasoningTokens),
          ...(end > 0n ? { usageTime: { seconds: String(endMs / 1000n), nanos: Number(end % 1_000_000_000n) } } : {}),
          ...(end >= start && start > 0n ? { responseTimeMs: String((end - start) / NANOS_PER_MS) } : {}),
          hadError: span.error !== undefined,
          errorMessage: (span.error ?? '').slice(0, 1000),
          reference: `otel:${span.traceId}:${span.spanId}`,
          metadata: { otel_span_name: span.name.slice(0, 200), otel_trace_id: span.traceId, otel_span_id: span.spanId, otel_attributes: u.from },
        },
      });
    }
    for (let i = 0; i < charges.length; i += MAX_BATCH) {
      const batch = charges.slice(i, i + MAX_BATCH);
      const response = await this.recordCharges(RecordChargesRequest.fromPartial({ charges: batch.map((c) => RecordChargeRequest.fromPartial(c.request)) }), metadata);
      response.results.forEach((r, n) => {
        if (r.result?.$case === 'recorded') result.recorded++;
        else reject(batch[n].span, r.result?.$case === 'error' ? r.result.value.message : 'not recorded');
      });
    }
    return result;
  }
}
