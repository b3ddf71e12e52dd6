/**
 * Typed domain errors. Each carries a gRPC-style code and a machine-readable
 * reason; the app maps them to a gRPC status with google.rpc details in one
 * place (apps/metering/src/grpc/errors.ts).
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'ALREADY_EXISTS'
  | 'NOT_FOUND'
  | 'FAILED_PRECONDITION'
  | 'OUT_OF_RANGE'
  | 'RESOURCE_EXHAUSTED'
  | 'ABORTED'
  | 'UNAVAILABLE'
  | 'INTERNAL';

export interface FieldViolation {
  /** The request field, snake_case as in the proto, e.g. "prompt_tokens". */
  field: string;
  description: string;
}

export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    /** UPPER_SNAKE_CASE reason for google.rpc.ErrorInfo. */
    readonly reason: string,
    message: string,
    readonly metadata: Record<string, string> = {},
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad input: every bad field is named. Nothing was written. */
export class ValidationError extends DomainError {
  constructor(readonly violations: FieldViolation[]) {
    super(
      'INVALID_ARGUMENT',
      'INVALID_ARGUMENT',
      `invalid request: ${violations.map((v) => (v.field ? `${v.field}: ${v.description}` : v.description)).join('; ')}`,
      { fields: violations.map((v) => v.field).join(',') },
    );
  }
}

/** An idempotency key was reused with different content. Nothing was written. */
export class IdempotencyConflictError extends DomainError {
  constructor(
    readonly idempotencyKey: string,
    readonly fields: string[],
    what = 'a charge',
  ) {
    super(
      'ALREADY_EXISTS',
      'IDEMPOTENCY_KEY_REUSED',
      `idempotency_key was already used for ${what} with different content (differs in: ${fields.join(', ')})`,
      { idempotency_key: idempotencyKey, fields: fields.join(',') },
    );
  }
}

/** The database cannot be reached; retry later with the same idempotency key. */
export class UnavailableError extends DomainError {
  constructor(message = 'the database is unavailable; retry with the same idempotency key') {
    super('UNAVAILABLE', 'DATABASE_UNAVAILABLE', message);
  }
}

/** A transaction lost a race (serialization failure or deadlock); safe to retry. */
export class ConflictRetryError extends DomainError {
  constructor(message = 'the transaction conflicted with another; retry with the same idempotency key') {
    super('ABORTED', 'TRANSACTION_CONFLICT', message);
  }
}

/**
 * A value of this request cannot be stored: it would take a stored total (a
 * usage counter or rollup of the account) past the database's range. Nothing
 * was written; the other calls of its batch are not affected.
 */
export class ValueOutOfRangeError extends DomainError {
  constructor(message = 'the charge would take a stored usage total of this account past its range (64-bit); nothing was written') {
    super('OUT_OF_RANGE', 'VALUE_OUT_OF_RANGE', message);
  }
}

/** The thing asked for does not exist (e.g. no price for a model at that time). */
export class NotFoundError extends DomainError {
  constructor(reason: string, message: string) {
    super('NOT_FOUND', reason, message);
  }
}
