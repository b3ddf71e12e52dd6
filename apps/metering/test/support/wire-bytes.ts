import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';

/** Request bytes the generated client cannot produce, for the wire suites. */

/** Metadata nested `levels` JSON levels deep: {"a": {"a": ... 1}}. */
export const nestedMetadata = (levels: number): object => (levels === 1 ? { a: 1 } : { a: nestedMetadata(levels - 1) });

/** A message of one varint field whose value takes `length` bytes (at most 10 are valid). */
export function longVarint(field: number, length: number): Uint8Array {
  const w = new BinaryWriter();
  w.tag(field, WireType.Varint);
  return Buffer.concat([w.finish(), Buffer.from([...Array<number>(length - 1).fill(0xff), 0x01])]);
}

/** An unknown field `field` holding groups nested `levels` deep (start-group tags, then as many end-group tags). */
export function nestedGroups(field: number, levels: number): Uint8Array {
  const w = new BinaryWriter();
  for (let i = 0; i < levels; i++) w.tag(field, WireType.StartGroup);
  for (let i = 0; i < levels; i++) w.tag(field, WireType.EndGroup);
  return w.finish();
}

/** `encoded` with the UTF-8 bytes of `placeholder` (which must occur once) replaced by `bytes` of the same length: the framing stays valid. */
export function withBytes(encoded: Uint8Array, placeholder: string, bytes: Uint8Array): Uint8Array {
  const copy = Buffer.from(encoded);
  const needle = Buffer.from(placeholder);
  const at = copy.indexOf(needle);
  if (at < 0 || copy.indexOf(needle, at + 1) >= 0 || bytes.length !== needle.length) throw new Error(`"${placeholder}" must occur once and be ${bytes.length} bytes`);
  copy.set(bytes, at);
  return copy;
}
