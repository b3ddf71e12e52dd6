import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { Any, BadRequest, ErrorInfo, QuotaFailure, Status } from '@metering/contracts';
import { DimensionValuesExhaustedError, DomainError, ErrorCode, QuotaExceededError, ValidationError } from '@metering/domain';

/**
 * The one place where errors become gRPC statuses. Domain errors keep their
 * code and message and gain google.rpc details (BadRequest naming every bad
 * field, QuotaFailure naming the limits a denied check hit (or the dimension
 * whose values per day a charge would exceed), ErrorInfo with a
 * reason) in the `grpc-status-details-bin` trailer.
 * Anything else is INTERNAL with a generic message: no SQL, no stack trace.
 */
export const ERROR_DOMAIN = 'metering.v1';

const CODE: Record<ErrorCode, status> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  NOT_FOUND: status.NOT_FOUND,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  OUT_OF_RANGE: status.OUT_OF_RANGE,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  ABORTED: status.ABORTED,
  UNAVAILABLE: status.UNAVAILABLE,
  INTERNAL: status.INTERNAL,
};

const pack = (typeName: string, value: Uint8Array): Any => ({ typeUrl: `type.googleapis.com/${typeName}`, value: Buffer.from(value) });

/** The google.rpc.Status of an error: its code, message and details (BadRequest, ErrorInfo). */
export function toRpcStatus(err: unknown, requestId?: string): Status {
  const domain = err instanceof DomainError ? err : undefined;
  const code = domain ? CODE[domain.code] : status.INTERNAL;
  const message = domain ? domain.message : `internal error (request id ${requestId ?? 'unknown'})`;
  const details: Any[] = [];
  if (domain instanceof ValidationError) {
    details.push(pack('google.rpc.BadRequest', BadRequest.encode({ fieldViolations: domain.violations }).finish()));
  }
  if (domain instanceof QuotaExceededError || domain instanceof DimensionValuesExhaustedError) {
    details.push(pack('google.rpc.QuotaFailure', QuotaFailure.encode({ violations: domain.violations }).finish()));
  }
  details.push(
    pack(
      'google.rpc.ErrorInfo',
      ErrorInfo.encode({
        reason: domain ? domain.reason : 'INTERNAL',
        domain: ERROR_DOMAIN,
        metadata: { ...(domain?.metadata ?? {}), ...(requestId ? { request_id: requestId } : {}) },
      }).finish(),
    ),
  );
  return { code, message, details };
}

export function toServiceError(err: unknown, requestId: string): ServiceError & { internal: boolean } {
  const rpc = toRpcStatus(err, requestId);
  const metadata = new Metadata();
  metadata.set('grpc-status-details-bin', Buffer.from(Status.encode(rpc).finish()));
  return Object.assign(new Error(rpc.message), { code: rpc.code as status, details: rpc.message, metadata, internal: !(err instanceof DomainError) });
}
