import { isUtf8 } from 'node:buffer';
import { createFileRegistry, type DescField, type DescMessage, fromBinary, ScalarType } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import { descriptorSetBase64 } from '@metering/contracts';
import { type FieldViolation, ValidationError } from '@metering/domain';

/**
 * Requests are checked on their bytes, before any handler sees them.
 *
 * grpc-js answers INTERNAL ("Error deserializing request") itself when a
 * request deserializer throws, and the protobuf decoder replaces invalid UTF-8
 * with U+FFFD without a word (so two different idempotency keys could become
 * one). `checkedService` wraps every request deserializer of a service: it
 * decodes with a strict UTF-8 decoder, and when the bytes are not a valid
 * message it returns a `MalformedRequest` instead of throwing; the handler
 * answers it with INVALID_ARGUMENT naming the field (`rejectMalformed`).
 *
 * Valid requests pay nothing more than the strict decoder (ASCII strings do
 * not even reach it) and a WeakMap entry keeping their bytes (so RecordCharges
 * can size its answer from them, `repeatedSizes`); only a failed decode walks
 * the bytes again, with the message descriptors, to name what is wrong.
 */

/** The generated decoders refuse messages nested deeper than this (every message counts, a map entry too). */
export const MAX_MESSAGE_DEPTH = 100;

/** What the deserializer hands to the handler when the request bytes are not a valid message. */
export class MalformedRequest {
  constructor(readonly error: ValidationError) {}
}

/** Throws the INVALID_ARGUMENT of a request that failed to decode. */
export function rejectMalformed(request: unknown): void {
  if (request instanceof MalformedRequest) throw request.error;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const decodeStrict = (bytes: Uint8Array) => strictUtf8.decode(bytes);

/** The bytes each decoded request came from, while the request lives. */
const wireBytes = new WeakMap<object, Uint8Array>();

/**
 * The encoded size of each element of a repeated message field (`field`, by
 * number) of a request, read from the bytes it was decoded from: tag, length
 * and body, as the element takes on the wire. Undefined for a request that
 * did not come through a checked deserializer.
 */
export function repeatedSizes(request: object, field: number): number[] | undefined {
  const bytes = wireBytes.get(request);
  if (!bytes) return undefined;
  const reader = new BinaryReader(bytes);
  const sizes: number[] = [];
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const [number, wireType] = reader.tag();
    reader.skip(wireType, number);
    if (number === field && wireType === WireType.LengthDelimited) sizes.push(reader.pos - start);
  }
  return sizes;
}

let registry: ReturnType<typeof createFileRegistry> | undefined;
/** The message descriptors of the contract, from the FileDescriptorSet buf built from proto/. */
function descriptors() {
  registry ??= createFileRegistry(fromBinary(FileDescriptorSetSchema, Buffer.from(descriptorSetBase64, 'base64')));
  return registry;
}

/** The request descriptor of each method of a service, by the method's path ("/pkg.Service/Method"). */
function requestTypes(serviceName: string): Map<string, DescMessage> {
  const service = descriptors().getService(serviceName);
  if (!service) throw new Error(`${serviceName} is not in the contract's descriptors`);
  return new Map(service.methods.map((m) => [`/${service.typeName}/${m.name}`, m.input]));
}

/**
 * The service definition with every request deserializer checked: strict
 * UTF-8, and a `MalformedRequest` (never a throw) for bytes that are not a
 * valid message.
 */
export function checkedService<S extends ServiceDefinition>(service: S, serviceName: string): S {
  const inputs = requestTypes(serviceName);
  const checked: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [key, method] of Object.entries(service)) {
    const input = inputs.get(method.path);
    if (!input) throw new Error(`${method.path} is not in the contract's descriptors`);
    const decode = method.requestDeserialize;
    checked[key] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          // The generated decode(input: BinaryReader | Uint8Array) reads through the reader it is
          // given, nested messages included: this one throws on invalid UTF-8.
          const request = decode(new BinaryReader(bytes, decodeStrict) as unknown as Buffer);
          wireBytes.set(request, bytes);
          return request;
        } catch (err) {
          return new MalformedRequest(new ValidationError(diagnose(input, bytes, err)));
        }
      },
    };
  }
  return checked as S;
}

/** What is wrong with bytes the generated decoder refused: every string that is not UTF-8, or the first structural fault. */
export function diagnose(type: DescMessage, bytes: Uint8Array, decodeError?: unknown): FieldViolation[] {
  const found: FieldViolation[] = [];
  try {
    walk({ reader: new BinaryReader(bytes), bytes, found }, bytes.length, type, '', 1);
  } catch (err) {
    if (!(err instanceof WireFault)) throw err;
    found.push({ field: err.field, description: err.description });
  }
  if (found.length === 0) {
    const why = decodeError instanceof Error ? decodeError.message : String(decodeError);
    found.push({ field: '', description: `the request is not a valid ${type.typeName} message (${why})` });
  }
  return found;
}

/** The bytes being walked, a reader over them, and the violations found so far. */
interface Wire {
  reader: BinaryReader;
  bytes: Uint8Array;
  found: FieldViolation[];
}

class WireFault extends Error {
  constructor(
    readonly field: string,
    readonly description: string,
  ) {
    super(`${field}: ${description}`);
  }
}

/** Runs a read of the reader; its failure becomes a fault of `field`. */
function read<T>(field: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (message === 'premature EOF') throw new WireFault(field, 'is truncated: the message ends inside it');
    if (message === 'invalid varint') throw new WireFault(field, 'is malformed: a varint longer than 10 bytes');
    throw new WireFault(field, `is malformed: ${message}`);
  }
}

const STRUCT = 'google.protobuf.Struct';
const VALUE = 'google.protobuf.Value';
const LIST_VALUE = 'google.protobuf.ListValue';

/**
 * The path of a field for a caller, as in BadRequest: `charges[3].idempotency_key`,
 * and JSON metadata as `metadata["key"][2]` (a Struct, a Value and a ListValue
 * add nothing of their own).
 */
function pathOf(parent: DescMessage, path: string, field: DescField, index: number): string {
  if (parent.typeName === VALUE || parent.typeName === STRUCT) return path;
  if (parent.typeName === LIST_VALUE) return `${path}[${index}]`;
  const base = path ? `${path}.${field.name}` : field.name;
  return field.fieldKind === 'list' ? `${base}[${index}]` : base;
}

const isString = (field: DescField) =>
  (field.fieldKind === 'scalar' || (field.fieldKind === 'list' && field.listKind === 'scalar')) && field.scalar === ScalarType.STRING;

/** Walks one message from the reader's position to `end`, as the generated decoder does, recording what it would refuse or alter. */
function walk(wire: Wire, end: number, type: DescMessage, path: string, depth: number): void {
  const { reader, found } = wire;
  const seen = new Map<number, number>();
  while (reader.pos < end) {
    const [number, wireType] = read(path, () => reader.tag());
    const field = type.fields.find((f) => f.number === number);
    const index = seen.get(number) ?? 0;
    seen.set(number, index + 1);
    // An unknown field is named by its number.
    const here = field ? pathOf(type, path, field, index) : path ? `${path}.${number}` : String(number);
    if (!field || wireType !== WireType.LengthDelimited) {
      // Unknown fields and scalars are skipped; a varint is read in full, as the decoder reads it.
      read(here, () => (wireType === WireType.Varint ? reader.int64() : reader.skip(wireType, number)));
      continue;
    }
    const length = read(here, () => reader.uint32());
    if (length > end - reader.pos) throw new WireFault(here, `is truncated: ${length} bytes long, ${end - reader.pos} left in the message`);
    const stop = reader.pos + length;
    if (isString(field)) {
      if (!isUtf8(wire.bytes.subarray(reader.pos, stop))) found.push({ field: here, description: 'must be valid UTF-8' });
    } else if (field.fieldKind === 'message' || (field.fieldKind === 'list' && field.listKind === 'message')) {
      if (depth + 1 > MAX_MESSAGE_DEPTH) throw new WireFault(here, `is nested too deeply to decode (more than ${MAX_MESSAGE_DEPTH} protobuf messages)`);
      walk(wire, stop, field.message, here, depth + 1);
    } else if (field.fieldKind === 'map') {
      mapEntry(wire, stop, here, field, depth + 1);
    }
    reader.pos = stop;
  }
  if (reader.pos > end) throw new WireFault(path, 'is truncated: a field runs past the end of the message');
}

/** One entry of a map field (key = 1, value = 2), named by its key. */
function mapEntry(wire: Wire, end: number, container: string, field: DescField & { fieldKind: 'map' }, depth: number): void {
  const { reader, found } = wire;
  if (depth > MAX_MESSAGE_DEPTH) throw new WireFault(container, `is nested too deeply to decode (more than ${MAX_MESSAGE_DEPTH} protobuf messages)`);
  let key = '';
  let value: [number, number] | undefined;
  while (reader.pos < end) {
    const [number, wireType] = read(container, () => reader.tag());
    if (wireType !== WireType.LengthDelimited) {
      read(container, () => (wireType === WireType.Varint ? reader.int64() : reader.skip(wireType, number)));
      continue;
    }
    const length = read(container, () => reader.uint32());
    if (length > end - reader.pos) throw new WireFault(container, `is truncated: ${length} bytes long, ${end - reader.pos} left in the message`);
    const bytes = wire.bytes.subarray(reader.pos, reader.pos + length);
    if (number === 1 && field.mapKey === ScalarType.STRING) {
      if (!isUtf8(bytes)) found.push({ field: container, description: 'must have valid UTF-8 keys' });
      key = Buffer.from(bytes).toString('utf8');
    } else if (number === 2) {
      value = [reader.pos, reader.pos + length];
    }
    reader.pos += length;
  }
  if (!value) return;
  const here = `${container}[${JSON.stringify(key)}]`;
  if (field.mapKind === 'scalar' && field.scalar === ScalarType.STRING) {
    if (!isUtf8(wire.bytes.subarray(value[0], value[1]))) found.push({ field: here, description: 'must be valid UTF-8' });
  } else if (field.mapKind === 'message') {
    if (depth + 1 > MAX_MESSAGE_DEPTH) throw new WireFault(here, `is nested too deeply to decode (more than ${MAX_MESSAGE_DEPTH} protobuf messages)`);
    const after = reader.pos;
    reader.pos = value[0];
    walk(wire, value[1], field.message, here, depth + 1);
    reader.pos = after;
  }
}
