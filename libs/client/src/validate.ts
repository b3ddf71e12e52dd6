import type { DescField, DescMessage } from '@bufbuild/protobuf';
import { ScalarType } from '@bufbuild/protobuf';
import { messageDesc } from '@metering/contracts';

/**
 * A request the client refuses before sending it: a value that the wire cannot carry, such as
 * a fractional or too large token count (`promptTokens: String(prompt.length / 4)`). Without
 * this check grpc-js answers `13 INTERNAL: Request message serialization failure`, which names
 * nothing. `field` is the path in the request (e.g. `estimate.promptTokens`).
 */
export class MeteringRequestError extends Error {
  override readonly name = 'MeteringRequestError';
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

const INT64 = new Set([ScalarType.INT64, ScalarType.SINT64, ScalarType.SFIXED64]);
const UINT64 = new Set([ScalarType.UINT64, ScalarType.FIXED64]);
const INT32 = new Set([ScalarType.INT32, ScalarType.SINT32, ScalarType.SFIXED32]);
const UINT32 = new Set([ScalarType.UINT32, ScalarType.FIXED32]);
const INT64_MAX = 2n ** 63n - 1n;
const UINT64_MAX = 2n ** 64n - 1n;

function checkInteger(path: string, value: unknown, min: bigint, max: bigint, kind: string): void {
  const text = typeof value === 'bigint' ? value.toString() : typeof value === 'number' ? String(value) : value;
  if (typeof text !== 'string' || !/^-?\d+$/.test(text)) {
    throw new MeteringRequestError(path, `${JSON.stringify(text)} is not a whole number (${kind}); counts are whole units: round before sending, e.g. String(Math.ceil(prompt.length / 4))`);
  }
  const n = BigInt(text);
  if (n < min || n > max) throw new MeteringRequestError(path, `${text} is out of range for ${kind} (${min} to ${max})`);
}

function checkScalar(path: string, type: ScalarType, value: unknown): void {
  if (value === undefined || value === null) return;
  if (INT64.has(type)) checkInteger(path, value, -INT64_MAX - 1n, INT64_MAX, 'int64');
  else if (UINT64.has(type)) checkInteger(path, value, 0n, UINT64_MAX, 'uint64');
  else if (INT32.has(type)) checkInteger(path, value, -(2n ** 31n), 2n ** 31n - 1n, 'int32');
  else if (UINT32.has(type)) checkInteger(path, value, 0n, 2n ** 32n - 1n, 'uint32');
  else if (type === ScalarType.STRING && typeof value !== 'string') throw new MeteringRequestError(path, `expected a string, got ${typeof value}`);
  else if (type === ScalarType.BOOL && typeof value !== 'boolean') throw new MeteringRequestError(path, `expected a boolean, got ${typeof value}`);
}

function fieldValue(message: Record<string, unknown>, field: DescField): unknown {
  if (!field.oneof || field.oneof.kind !== 'oneof') return message[field.localName];
  // ts-proto's oneof=unions: { [oneof]: { $case, value } }; without it the field is a plain property.
  const union = message[field.oneof.localName] as { $case?: string; value?: unknown } | undefined;
  if (union && typeof union === 'object' && '$case' in union) return union.$case === field.localName ? union.value : undefined;
  return message[field.localName];
}

function checkMessage(desc: DescMessage, message: unknown, prefix: string): void {
  // Well-known types (Struct, Timestamp, Any) have their own ts-proto shapes; the wire checks them.
  if (message === undefined || message === null || desc.file.name.startsWith('google/protobuf/')) return;
  if (typeof message !== 'object') throw new MeteringRequestError(prefix || desc.name, `expected an object, got ${typeof message}`);
  for (const field of desc.fields) {
    const value = fieldValue(message as Record<string, unknown>, field);
    if (value === undefined || value === null) continue;
    const path = prefix ? `${prefix}.${field.localName}` : field.localName;
    switch (field.fieldKind) {
      case 'scalar':
        checkScalar(path, field.scalar, value);
        break;
      case 'message':
        checkMessage(field.message, value, path);
        break;
      case 'list':
        if (!Array.isArray(value)) throw new MeteringRequestError(path, 'expected an array');
        value.forEach((item, i) => (field.listKind === 'scalar' ? checkScalar(`${path}[${i}]`, field.scalar, item) : field.listKind === 'message' ? checkMessage(field.message, item, `${path}[${i}]`) : undefined));
        break;
      case 'map':
        for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
          if (field.mapKind === 'scalar') checkScalar(`${path}[${JSON.stringify(key)}]`, field.scalar, item);
          else if (field.mapKind === 'message') checkMessage(field.message, item, `${path}[${JSON.stringify(key)}]`);
        }
        break;
      default:
        break;
    }
  }
}

/** Throws MeteringRequestError naming the field when `request` (of the message `typeName`) cannot be sent. */
export function checkRequest(typeName: string, request: unknown): void {
  checkMessage(messageDesc(typeName), request, '');
}
