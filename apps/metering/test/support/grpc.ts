import { type CallOptions, Metadata, type ServiceError } from '@grpc/grpc-js';
import * as contracts from '@metering/contracts';
import { BadRequest, ErrorInfo, QuotaFailure, Status } from '@metering/contracts';

/** The last (fullest) overload of a generated unary client method; TypeScript infers Req and Res from it. */
type UnaryMethod<Req, Res> = (req: Req, metadata: Metadata, options: Partial<CallOptions>, cb: (err: ServiceError | null, res: Res) => void) => unknown;

/**
 * Calls a generated unary client method as a promise, with a deadline (10 s unless given) and the
 * given metadata (e.g. an API key). A test that queues many calls on the same rows gives a longer
 * deadline: a call that gives up waiting may still commit, and its answer is then unknown.
 */
export function call<Req, Res>(method: UnaryMethod<Req, Res>, self: object, req: Req | Partial<Req>, metadata = new Metadata(), deadlineMs = 10_000): Promise<Res> {
  return new Promise((resolve, reject) =>
    method.call(self, withDefaults(method, req), metadata, { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

/**
 * A request with the fields it leaves out at their proto3 defaults (a field added to a request
 * later is then '' or 0, as it is for a client built before it), the given ones as they are.
 */
function withDefaults<Req>(method: object, req: Partial<Req>): Req {
  const path = (method as { path?: string }).path ?? '';
  const type = (contracts as Record<string, unknown>)[`${path.slice(path.lastIndexOf('/') + 1)}Request`] as { fromPartial?: (x: object) => Req } | undefined;
  return (type?.fromPartial ? { ...type.fromPartial({}), ...req } : req) as Req;
}

/** Metadata carrying an API key as a backend sends it. */
export function bearer(key: string): Metadata {
  const md = new Metadata();
  md.set('authorization', `Bearer ${key}`);
  return md;
}

/** The google.rpc.Status details of a failed call, decoded as a client would. */
export function statusDetails(err: ServiceError): { status: Status; badRequest?: BadRequest; errorInfo?: ErrorInfo; quotaFailure?: QuotaFailure } {
  const bin = err.metadata?.get('grpc-status-details-bin')[0];
  if (!Buffer.isBuffer(bin)) throw new Error(`no grpc-status-details-bin on ${err.code} ${err.details}`);
  const status = Status.decode(bin);
  const result: ReturnType<typeof statusDetails> = { status };
  for (const any of status.details) {
    if (any.typeUrl === 'type.googleapis.com/google.rpc.BadRequest') result.badRequest = BadRequest.decode(any.value);
    if (any.typeUrl === 'type.googleapis.com/google.rpc.ErrorInfo') result.errorInfo = ErrorInfo.decode(any.value);
    if (any.typeUrl === 'type.googleapis.com/google.rpc.QuotaFailure') result.quotaFailure = QuotaFailure.decode(any.value);
  }
  return result;
}

/** Awaits a promise that must fail with a gRPC error, and returns it. */
export async function grpcError(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (e) {
    return e as ServiceError;
  }
  throw new Error('expected the call to fail');
}
