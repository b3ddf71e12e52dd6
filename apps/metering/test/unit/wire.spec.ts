import { MeteringServiceService, RecordChargeRequest, RecordChargesRequest, WatchChargesRequest } from '@metering/contracts';
import { ValidationError } from '@metering/domain';
import fc from 'fast-check';
import { checkedService, MalformedRequest, MAX_MESSAGE_DEPTH } from '../../src/grpc/wire';
import { chargeRequest } from '../support/requests';
import { longVarint, nestedGroups, nestedMetadata } from '../support/wire-bytes';

/**
 * The request deserializers the server registers (grpc/wire.ts): bytes that
 * are not a valid message become an INVALID_ARGUMENT naming the field
 * instead of grpc-js' INTERNAL. The e2e suite (wire.e2e.spec.ts) sends the same
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
