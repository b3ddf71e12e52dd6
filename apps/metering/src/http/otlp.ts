import { Metadata } from '@grpc/grpc-js';
import { DomainError } from '@metering/domain';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import * as protobuf from 'protobufjs';
import type { Logger } from '../logger';
import type { MeteringMethods } from '../server';
import { toRpcStatus } from '../grpc/errors';
import { type OtlpSpan, OtlpService } from '../services/otlp.service';
import { OTLP_TRACE_PROTOS } from './otlp-schema';

/**
 * The OTLP/HTTP traces receiver: POST /v1/traces on the HTTP port, the body an
 * ExportTraceServiceRequest as binary protobuf (application/x-protobuf) or OTLP/JSON
 * (application/json), optionally gzip-encoded. GenAI spans become charges (OtlpService); the
 * answer is an ExportTraceServiceResponse in the request's encoding, its partial_success
 * counting the spans refused and why. Errors follow OTLP/HTTP: 400 for a body that does not
 * decode, 401/403 for the API key (`authorization: Bearer <key>`, as OTEL_EXPORTER_OTLP_HEADERS
 * sets it), 503 (retryable) when the database is unreachable, each with a google.rpc.Status.
 *
 * Decoding uses protobufjs (already locked: @grpc/proto-loader's parser) on the OTLP .proto
 * files themselves (otlp-schema.ts): the OpenTelemetry JS packages only serialize (their
 * otlp-transformer has no request decoder since it dropped its protobufjs root), and no other
 * maintained npm package decodes OTLP requests.
 */

export const OTLP_TRACES_PATH = '/v1/traces';
const MAX_BODY_BYTES = 4 * 1024 * 1024;

const root = new protobuf.Root();
for (const source of Object.values(OTLP_TRACE_PROTOS)) protobuf.parse(source, root, { keepCase: false });
const ExportRequest = root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
const ExportResponse = root.lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceResponse');
const RpcStatus = protobuf.parse(
  'syntax = "proto3"; package google.rpc; message Status { int32 code = 1; string message = 2; }',
  new protobuf.Root(),
).root.lookupType('google.rpc.Status');

class BadOtlp extends Error {}

/** An OTLP AnyValue (as protobufjs's toObject or OTLP/JSON give it) as a plain value. */
function anyValue(v: unknown, depth = 0): unknown {
  if (!v || typeof v !== 'object' || depth > 8) return undefined;
  const a = v as Record<string, unknown>;
  if (a.stringValue !== undefined) return String(a.stringValue);
  if (a.intValue !== undefined) {
    const n = typeof a.intValue === 'number' ? a.intValue : Number(a.intValue);
    return Number.isSafeInteger(n) ? n : String(a.intValue);
  }
  if (a.doubleValue !== undefined) return Number(a.doubleValue);
  if (a.boolValue !== undefined) return Boolean(a.boolValue);
  const array = a.arrayValue as { values?: unknown[] } | undefined;
  if (array) return (array.values ?? []).map((x) => anyValue(x, depth + 1));
  return undefined;
}

function attributesOf(list: unknown, into: Record<string, unknown>): Record<string, unknown> {
  if (list === undefined) return into;
  if (!Array.isArray(list)) throw new BadOtlp('attributes must be a list of {key, value}');
  for (const kv of list as Array<{ key?: unknown; value?: unknown }>) {
    if (typeof kv?.key !== 'string') throw new BadOtlp('an attribute has no key');
    into[kv.key] = anyValue(kv.value);
  }
  return into;
}

const hexOf = (id: unknown, json: boolean): string => {
  if (typeof id !== 'string') return '';
  return json ? id.toLowerCase() : Buffer.from(id, 'base64').toString('hex');
};

/** The spans of an ExportTraceServiceRequest object (protobufjs toObject with base64 bytes, or OTLP/JSON with hex ids). */
export function spansOf(request: unknown, json: boolean): OtlpSpan[] {
  const spans: OtlpSpan[] = [];
  const resourceSpans = (request as { resourceSpans?: unknown })?.resourceSpans ?? [];
  if (!Array.isArray(resourceSpans)) throw new BadOtlp('resourceSpans must be a list');
  for (const rs of resourceSpans as Array<{ resource?: { attributes?: unknown }; scopeSpans?: unknown }>) {
    const resource = attributesOf(rs?.resource?.attributes, {});
    const scopeSpans = rs?.scopeSpans ?? [];
    if (!Array.isArray(scopeSpans)) throw new BadOtlp('scopeSpans must be a list');
    for (const ss of scopeSpans as Array<{ spans?: unknown }>) {
      const list = ss?.spans ?? [];
      if (!Array.isArray(list)) throw new BadOtlp('spans must be a list');
      for (const s of list as Array<Record<string, unknown>>) {
        const status = s.status as { code?: unknown; message?: unknown } | undefined;
        const nanos = (v: unknown) => {
          const t = typeof v === 'number' ? String(Math.trunc(v)) : typeof v === 'string' ? v : '0';
          if (!/^\d{1,20}$/.test(t)) throw new BadOtlp(`a span time must be unsigned nanoseconds, got ${JSON.stringify(v)}`);
          return t;
        };
        spans.push({
          traceId: hexOf(s.traceId, json),
          spanId: hexOf(s.spanId, json),
          name: typeof s.name === 'string' ? s.name : '',
          startTimeUnixNano: nanos(s.startTimeUnixNano),
          endTimeUnixNano: nanos(s.endTimeUnixNano),
          attributes: attributesOf(s.attributes, { ...resource }),
          ...(status && (status.code === 2 || status.code === 'STATUS_CODE_ERROR') ? { error: typeof status.message === 'string' && status.message ? status.message : 'error' } : {}),
        });
      }
    }
  }
  return spans;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new BadOtlp(`the request is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  const body = Buffer.concat(chunks);
  const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
  if (encoding === 'gzip') return promisify(gunzip)(body, { maxOutputLength: MAX_BODY_BYTES }).catch(() => Promise.reject(new BadOtlp(`the gzip body does not decompress (to at most ${MAX_BODY_BYTES} bytes)`)));
  if (encoding !== 'identity') throw new BadOtlp(`content-encoding ${encoding} is not supported (gzip or none)`);
  return body;
}

const HTTP_OF: Record<number, number> = { 3: 400, 16: 401, 7: 403, 14: 503, 8: 429, 4: 504 };

/** The OTLP receiver's request handler; `handles(req)` says whether a request is its. */
export function otlpReceiver(methods: MeteringMethods, userAttribute: string, log: Logger) {
  const recordCharges = methods.unary.recordCharges as unknown as ConstructorParameters<typeof OtlpService>[0];
  const service = new OtlpService(recordCharges, userAttribute);
  return {
    handles: (req: IncomingMessage) => (req.url ?? '').split('?')[0] === OTLP_TRACES_PATH,
    async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
      const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
      const json = type === 'application/json';
      const answer = (code: number, message: protobuf.Message | Record<string, unknown>, asStatus = false) => {
        const body = json
          ? Buffer.from(JSON.stringify(message))
          : Buffer.from((asStatus ? RpcStatus : ExportResponse).encode((asStatus ? RpcStatus : ExportResponse).fromObject(message)).finish());
        res.writeHead(code, { 'content-type': json ? 'application/json' : 'application/x-protobuf', 'content-length': body.length });
        res.end(body);
      };
      if (req.method !== 'POST') {
        res.writeHead(405, { allow: 'POST', 'content-type': 'text/plain; charset=utf-8' });
        res.end('OTLP/HTTP traces: POST an ExportTraceServiceRequest\n');
        return;
      }
      if (!json && type !== 'application/x-protobuf' && type !== 'application/protobuf') {
        res.writeHead(415, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('content-type must be application/x-protobuf or application/json\n');
        return;
      }
      try {
        const body = await readBody(req);
        let spans: OtlpSpan[];
        try {
          const decoded = json ? JSON.parse(body.toString('utf8')) : ExportRequest.toObject(ExportRequest.decode(body), { longs: String, bytes: String, enums: Number });
          spans = spansOf(decoded, json);
        } catch (err) {
          throw err instanceof BadOtlp ? err : new BadOtlp(`the body is not an OTLP ExportTraceServiceRequest (${json ? 'JSON' : 'protobuf'}): ${(err as Error).message}`);
        }
        const metadata = new Metadata();
        const auth = req.headers.authorization;
        if (typeof auth === 'string') metadata.set('authorization', auth);
        const account = req.headers['x-metering-account-id'];
        const result = await service.export(spans, metadata, typeof account === 'string' ? account : '');
        log.info('otlp traces', { spans: spans.length, recorded: result.recorded, rejected: result.rejected });
        answer(200, result.rejected ? { partialSuccess: { rejectedSpans: String(result.rejected), errorMessage: result.errors.join('; ') } } : {});
      } catch (err) {
        if (err instanceof BadOtlp) return answer(400, { code: 3, message: err.message }, true);
        const status = toRpcStatus(err);
        if (!(err instanceof DomainError)) log.error('otlp traces failed', { err: String(err) });
        answer(HTTP_OF[status.code] ?? 500, { code: status.code, message: status.message }, true);
      }
    },
  };
}
