import { createFileRegistry, type DescMessage, fromBinary, ScalarType } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';
import { descriptorSetBase64, MeteringServiceService, RecordChargeRequest, RecordChargesRequest, WatchChargesRequest } from '@metering/contracts';
import { ValidationError } from '@metering/domain';
import fc from 'fast-check';
import { checkedService, MalformedRequest, MAX_MESSAGE_DEPTH } from '../../src/grpc/wire';
import { chargeRequest } from '../support/requests';
import { longVarint, nestedGroups, nestedMetadata, withBytes } from '../support/wire-bytes';

/**
 * The request deserializers the server registers (grpc/wire.ts): bytes that
 * are not a valid message, or that hold a string that is not UTF-8, become
 * an INVALID_ARGUMENT naming the field instead of grpc-js' INTERNAL or a
 * string silently altered to U+FFFD. The e2e suite (wire.e2e.spec.ts) sends the same
 * bytes to the real server.
 */
const SERVICE = 'metering.v1.MeteringService';
const checked = checkedService(MeteringServiceService, SERVICE);
type Method = keyof typeof MeteringServiceService;

/** What the server's deserializer makes of `bytes`: the decoded request, or the violations it answers with. */
function deserialize(method: Method, bytes: Uint8Array): unknown {
  const result = checked[method].requestDeserialize(Buffer.from(bytes));
  return result instanceof MalformedRequest ? result.error : result;
}
function violations(method: Method, bytes: Uint8Array) {
  const result = deserialize(method, bytes);
  if (!(result instanceof ValidationError)) throw new Error(`expected a malformed request, got ${JSON.stringify(result)}`);
  return result.violations;
}

const encodeCharge = (over: Partial<RecordChargeRequest>) => RecordChargeRequest.encode(chargeRequest(over)).finish();

describe('malformed protobuf', () => {
  it('metadata nested past the decoder limit is INVALID_ARGUMENT naming metadata, not INTERNAL', () => {
    // Each JSON level is three messages (Struct, its map entry, Value): 33 levels decode, 34 do not.
    expect(deserialize('recordCharge', encodeCharge({ metadata: nestedMetadata(33) }))).toMatchObject({ metadata: nestedMetadata(33) });
    const [v] = violations('recordCharge', encodeCharge({ metadata: nestedMetadata(34) }));
    expect(v.field).toBe(`metadata${'["a"]'.repeat(33)}`);
    expect(v.description).toBe(`is nested too deeply to decode (more than ${MAX_MESSAGE_DEPTH} protobuf messages)`);
    // Far deeper, it stops at the limit.
    expect(violations('recordCharge', encodeCharge({ metadata: nestedMetadata(300) }))[0].field).toBe(`metadata${'["a"]'.repeat(33)}`);
  });

  it('an 11-byte varint names its field', () => {
    expect(violations('recordCharge', longVarint(9, 11))).toEqual([{ field: 'prompt_tokens', description: 'is malformed: a varint longer than 10 bytes' }]);
    // 10 bytes is the longest varint: it decodes.
    expect(deserialize('recordCharge', longVarint(9, 10))).toHaveProperty('promptTokens');
  });

  it('a truncated length-delimited field names the field, also inside a repeated message', () => {
    const whole = encodeCharge({ accountId: 'acme-account' });
    expect(violations('recordCharge', whole.subarray(0, 5))).toEqual([{ field: 'account_id', description: 'is truncated: 12 bytes long, 3 left in the message' }]);
    const batch = RecordChargesRequest.encode({ charges: [chargeRequest(), chargeRequest({ idempotencyKey: 'k2' })] }).finish();
    const [v] = violations('recordCharges', batch.subarray(0, batch.length - 3));
    expect(v.field).toBe('charges[1]');
    expect(v.description).toMatch(/^is truncated: \d+ bytes long, \d+ left in the message$/);
  });

  it('unknown fields nested past the limit (groups) name the unknown field by its number', () => {
    expect(violations('watchCharges', nestedGroups(99, 101))).toEqual([{ field: '99', description: 'is malformed: maximum recursion depth reached' }]);
    expect(deserialize('watchCharges', nestedGroups(99, 100))).toHaveProperty('accountId', '');
  });

  it('the server stream request (WatchCharges) is checked the same way', () => {
    const whole = WatchChargesRequest.encode({ accountId: 'acme', afterSequence: '0', userId: '', provider: '', model: 'gpt-4o' }).finish();
    expect(violations('watchCharges', whole.subarray(0, whole.length - 2))).toEqual([{ field: 'model', description: 'is truncated: 6 bytes long, 4 left in the message' }]);
    expect(violations('watchCharges', longVarint(2, 11))).toEqual([{ field: 'after_sequence', description: 'is malformed: a varint longer than 10 bytes' }]);
  });

  it('no bytes make a deserializer throw: every method answers a decoded request or the violations', () => {
    const methods = Object.keys(MeteringServiceService) as Method[];
    const valid = encodeCharge({ metadata: { a: [1, 'x', { b: true }] }, usageTime: { seconds: '1764000000', nanos: 5 } });
    fc.assert(
      fc.property(
        fc.constantFrom(...methods),
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          // A valid charge cut short, or with bytes overwritten.
          fc.nat({ max: valid.length }).map((n) => valid.subarray(0, n)),
          fc.array(fc.tuple(fc.nat({ max: valid.length - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }).map((edits) => {
            const copy = Buffer.from(valid);
            for (const [at, byte] of edits) copy[at] = byte;
            return copy;
          }),
        ),
        (method, bytes) => {
          const result = deserialize(method, bytes);
          if (result instanceof ValidationError) {
            expect(result.violations.length).toBeGreaterThan(0);
            for (const v of result.violations) expect(v.description).not.toBe('');
          } else {
            expect(typeof result).toBe('object');
          }
        },
      ),
      { numRuns: 5000 },
    );
  });
});

/** One place in a request where a string goes, as the encoded request and the path the server must name. */
interface StringCase {
  method: Method;
  field: string;
  /** The request with `text` (UTF-8 bytes, valid or not) at that place. */
  encode(text: Uint8Array): Uint8Array;
}

const contract = createFileRegistry(fromBinary(FileDescriptorSetSchema, Buffer.from(descriptorSetBase64, 'base64')));

/**
 * Every string field reachable in a request type, nested messages and
 * repeated fields included (the string goes in element [2], after two valid
 * ones); message types already on the way down are not entered again, and
 * google.protobuf types (Struct metadata) have their own cases below.
 */
function* stringFields(type: DescMessage, path: string, within: string[]): Generator<{ field: string; encode(text: Uint8Array): Uint8Array }> {
  for (const field of type.fields) {
    const repeated = field.fieldKind === 'list';
    const at = `${path ? `${path}.` : ''}${field.name}${repeated ? '[2]' : ''}`;
    const put = (inner: Uint8Array, filler: Uint8Array) => {
      const w = new BinaryWriter();
      if (repeated) for (let i = 0; i < 2; i++) w.tag(field.number, WireType.LengthDelimited).bytes(filler);
      return w.tag(field.number, WireType.LengthDelimited).bytes(inner).finish();
    };
    const message = field.fieldKind === 'message' || (field.fieldKind === 'list' && field.listKind === 'message') ? field.message : undefined;
    if ((field.fieldKind === 'scalar' || (field.fieldKind === 'list' && field.listKind === 'scalar')) && field.scalar === ScalarType.STRING) {
      yield { field: at, encode: (text) => put(text, Buffer.from('ok')) };
    } else if (message && !message.typeName.startsWith('google.protobuf.') && !within.includes(message.typeName)) {
      for (const inner of stringFields(message, at, [...within, type.typeName])) yield { field: inner.field, encode: (text) => put(inner.encode(text), new Uint8Array()) };
    }
  }
}

const stringCases: StringCase[] = (Object.keys(MeteringServiceService) as Method[]).flatMap((method) => {
  const input = contract.getService(SERVICE)?.methods.find((m) => m.localName === method)?.input;
  if (!input) throw new Error(`${method} is not in the contract`);
  return [...stringFields(input, '', [])].map((c) => ({ method, ...c }));
});

/** The issue's keys: "k" then 0xff, 0xfe, 0xc0 (a lone lead byte), each decoded to "k\uFFFD" by a lenient decoder. */
const INVALID = [Uint8Array.of(0x6b, 0xff), Uint8Array.of(0x6b, 0xfe), Uint8Array.of(0x6b, 0xc0), Uint8Array.of(0xed, 0xa0, 0x80) /* a surrogate */, Uint8Array.of(0xc0, 0xaf) /* overlong "/" */];

describe('invalid UTF-8', () => {
  it('covers the strings of every request: RecordCharges charges[i], CheckLimits estimate, WatchCharges filters', () => {
    const fields = (method: Method) => stringCases.filter((c) => c.method === method).map((c) => c.field);
    expect(fields('recordCharges')).toEqual(expect.arrayContaining(['charges[2].idempotency_key', 'charges[2].model', 'charges[2].session_key']));
    expect(fields('checkLimits')).toEqual(expect.arrayContaining(['estimate.model', 'idempotency_key']));
    expect(fields('watchCharges')).toEqual(['account_id', 'user_id', 'provider', 'model']);
    // Every method with a string field has its cases (ListModels and the like have few, none has none unseen).
    expect(stringCases.length).toBeGreaterThan(100);
  });

  it.each(stringCases.map((c) => [c.method, c.field, c] as const))('%s %s: INVALID_ARGUMENT naming the field; valid UTF-8 there decodes', (_m, _f, c) => {
    for (const bytes of INVALID) expect(violations(c.method, c.encode(bytes))).toEqual([{ field: c.field, description: 'must be valid UTF-8' }]);
    // The same place with valid text (non-ASCII, and U+FFFD itself as a character) decodes.
    expect(deserialize(c.method, c.encode(Buffer.from('kü\uFFFD😀')))).not.toBeInstanceOf(ValidationError);
  });

  it('metadata keys and values, nested and in lists, are named by their JSON path; every bad string is named at once', () => {
    const base = encodeCharge({ metadata: { ok: 'fine', 'KEY!': 1, a: { b: ['x', 'VALUE!'] } } });
    expect(violations('recordCharge', withBytes(base, 'KEY!', Uint8Array.of(0x6b, 0xff, 0x6b, 0xff)))).toEqual([{ field: 'metadata', description: 'must have valid UTF-8 keys' }]);
    expect(violations('recordCharge', withBytes(base, 'VALUE!', Uint8Array.of(0x6b, 0xc0, 0x6b, 0x6b, 0x6b, 0x6b)))).toEqual([{ field: 'metadata["a"]["b"][1]', description: 'must be valid UTF-8' }]);
    const both = withBytes(withBytes(base, 'VALUE!', Uint8Array.of(0x6b, 0xfe, 0x6b, 0x6b, 0x6b, 0x6b)), 'KEY!', Uint8Array.of(0xff, 0xff, 0xff, 0xff));
    expect(violations('recordCharge', withBytes(both, 'k1', Uint8Array.of(0x6b, 0xff)))).toEqual([
      { field: 'idempotency_key', description: 'must be valid UTF-8' },
      { field: 'metadata', description: 'must have valid UTF-8 keys' },
      { field: 'metadata["a"]["b"][1]', description: 'must be valid UTF-8' },
    ]);
    // In a batch: the charge's index and the JSON path.
    const batch = RecordChargesRequest.encode({ charges: [0, 1, 2, 3].map((i) => chargeRequest({ idempotencyKey: `k${i}`, metadata: { note: i === 3 ? 'BAD!' : 'ok' } })) }).finish();
    expect(violations('recordCharges', withBytes(batch, 'BAD!', Uint8Array.of(0x42, 0x41, 0x44, 0xff)))).toEqual([{ field: 'charges[3].metadata["note"]', description: 'must be valid UTF-8' }]);
  });
});
