import type { ServiceDefinition } from '@grpc/grpc-js';
import { ValidationError } from '@metering/domain';

/**
 * Requests the protobuf decoder refuses (e.g. a google.protobuf.Struct nested
 * past its recursion limit, as a hostile `usage` or `metadata` object can be)
 * would be answered INTERNAL by grpc-js. The service's deserializers return
 * this marker instead, and the handler wrappers answer INVALID_ARGUMENT
 * naming the request: it is the caller's input, not the server, that is wrong.
 */
const UNDECODABLE = Symbol('undecodable request');

interface Undecodable {
  [UNDECODABLE]: string;
}

export function withDecodeErrorsAsInvalid<S extends ServiceDefinition>(service: S): S {
  return Object.fromEntries(
    Object.entries(service).map(([name, method]) => [
      name,
      {
        ...method,
        requestDeserialize: (bytes: Buffer) => {
          try {
            return method.requestDeserialize(bytes);
          } catch (err) {
            return { [UNDECODABLE]: err instanceof Error ? err.message : String(err) } satisfies Undecodable;
          }
        },
      },
    ]),
  ) as S;
}

/** Throws INVALID_ARGUMENT for a request the decoder refused. */
export function assertDecoded(request: unknown): void {
  if (request !== null && typeof request === 'object' && UNDECODABLE in request) {
    throw new ValidationError([{ field: 'request', description: `could not be decoded (${(request as Undecodable)[UNDECODABLE]}); objects may nest at most 8 levels` }]);
  }
}
