import { fromJson, type JsonValue, toJson } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-web';
import { meteringServiceDesc, registry } from '@metering/registry';

/**
 * The API from the browser: the server's Connect port (this page's origin), with the API key as
 * a bearer token. Requests and answers are the protobuf JSON mapping (decimal strings, enum
 * names), read through the contract's descriptors, so amounts stay exact strings here.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are read field by field, as the JSON mapping names them
export type Json = any;
type Call = (request: unknown, options?: { signal?: AbortSignal; onHeader?: (headers: Headers) => void }) => Promise<unknown> & AsyncIterable<unknown>;

export class Api {
  private readonly client: Record<string, Call>;

  constructor(key: string) {
    const auth: Interceptor = (next) => (req) => {
      if (key) req.header.set('authorization', `Bearer ${key}`);
      return next(req);
    };
    const transport = createConnectTransport({ baseUrl: location.origin, interceptors: [auth], jsonOptions: { registry } });
    this.client = createClient(meteringServiceDesc, transport) as unknown as Record<string, Call>;
  }

  /** The contract's method by its RPC name (GetDailyUsage); the client knows it by its local name (getDailyUsage). */
  private method(rpc: string) {
    const method = meteringServiceDesc.methods.find((m) => m.name === rpc);
    if (!method) throw new Error(`no RPC ${rpc} in the contract`);
    return method;
  }

  private request(rpc: string, body: JsonValue) {
    return fromJson(this.method(rpc).input, body, { registry });
  }

  private answer(rpc: string, message: unknown): Json {
    return toJson(this.method(rpc).output, message as never, { registry, alwaysEmitImplicit: true }) as Json;
  }

  async call(rpc: string, body: JsonValue): Promise<Json> {
    return this.answer(rpc, await this.client[this.method(rpc).localName](this.request(rpc, body)));
  }

  /** A server stream's messages as JSON, until `signal` aborts; `onHeader` sees the response headers as soon as they arrive. */
  async *stream(rpc: string, body: JsonValue, signal: AbortSignal, onHeader?: (headers: Headers) => void): AsyncGenerator<Json> {
    for await (const message of this.client[this.method(rpc).localName](this.request(rpc, body), { signal, onHeader })) yield this.answer(rpc, message);
  }
}

/** A refusal for people: the code, the message, and each field BadRequest names. */
export function describeError(err: unknown): string {
  const e = ConnectError.from(err);
  const fields = e.details
    .filter((d) => 'type' in d && d.type === 'google.rpc.BadRequest')
    .flatMap((d) => (('debug' in d ? (d.debug as { fieldViolations?: Array<{ field: string; description: string }> }) : {}).fieldViolations ?? []).map((v) => `${v.field}: ${v.description}`));
  return [`${Code[e.code]}: ${e.rawMessage}`, ...fields].join('\n');
}

export const isUnauthenticated = (err: unknown) => ConnectError.from(err).code === Code.Unauthenticated;

/** The account an API key belongs to (mk.<account, base64url>.<key id>.<secret>); empty for the operator key. */
export function accountOfKey(key: string): string {
  const parts = key.split('.');
  if (parts.length !== 4 || parts[0] !== 'mk') return '';
  try {
    return atob(parts[1].replace(/-/g, '+').replace(/_/g, '/'));
  } catch {
    return '';
  }
}
