// The contract at run time, for the protobuf JSON mapping (hand-written, not generated): the
// descriptors buf built from proto/ (descriptor_set.ts) as a @bufbuild/protobuf registry. The
// CLI's --json, the HTTP/JSON port (Connect) and the dashboard all read JSON through it, so
// they print what `buf curl` prints: enum names, RFC 3339 times, int64 as strings.
import { createFileRegistry, type DescMessage, type DescService, fromBinary, type JsonValue, toJson } from '@bufbuild/protobuf';
import { base64Decode } from '@bufbuild/protobuf/wire';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { descriptorSetBase64 } from './gen/descriptor_set';

export const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, base64Decode(descriptorSetBase64)));

const need = <T>(found: T | undefined, what: string): T => {
  if (!found) throw new Error(`${what} is not in the contract`);
  return found;
};

/** A message type of the contract by its full name, e.g. "metering.v1.ChargeEvent". */
export const messageDesc = (typeName: string): DescMessage => need(registry.getMessage(typeName), typeName);

/** metering.v1.MeteringService: its methods' localName is the ts-proto method name (recordCharge). */
export const meteringServiceDesc: DescService = need(registry.getService('metering.v1.MeteringService'), 'metering.v1.MeteringService');

/**
 * The protobuf JSON of an encoded message, with every field present: `false`, `0` and empty
 * values are kept (a script reading `"allowed"` finds it whether it is true or false).
 */
export function protoJson(typeName: string, bytes: Uint8Array): JsonValue {
  const desc = messageDesc(typeName);
  return toJson(desc, fromBinary(desc, bytes), { registry, alwaysEmitImplicit: true });
}
