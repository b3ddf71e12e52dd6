import { MAX_MESSAGE_BYTES, RecordChargeRequest, RecordChargeResult, RecordChargesResponse } from '@metering/contracts';
import { IdempotencyConflictError, MAX_KEY_LENGTH, ValidationError } from '@metering/domain';
import { PriceTable } from '@metering/pricing';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { answerBound, ERROR_RESULT_BYTES, errorResult, RESERVATION_BYTES, SERVER_FIELDS_BYTES } from '../../src/handlers/answer-size';
import { recordChargesHandler } from '../../src/handlers/charges.handler';
import { ChargesService } from '../../src/services/charges.service';
import { LimitsService } from '../../src/services/limits.service';
import { PricingService } from '../../src/services/pricing.service';
import { closeDatabase, Db, migrate, openDatabase } from '../../src/store/db';
import { embeddedTarget } from '../support/databases';
import { HOSTILE } from '../support/hostile';
import { chargeRequest, checkRequest } from '../support/requests';
import { ROOT } from '../support/server-process';

/**
 * The bound RecordCharges checks before writing (handlers/answer-size.ts)
 * holds for real answers: each result takes at most its request's bytes plus
 * SERVER_FIELDS_BYTES (plus RESERVATION_BYTES when it settles a reservation),
 * or ERROR_RESULT_BYTES for an error; so the whole answer is at most
 * answerBound(request), which the handler keeps under 4 MiB.
 */
const NOW = new Date('2026-12-01T12:00:00Z');
const clock = () => NOW;
const resultBytes = (r: RecordChargeResult) => RecordChargesResponse.encode({ results: [r] }).finish().length;
const requestBytes = (c: RecordChargeRequest) => RecordChargeRequest.encode(c).finish().length;

describe.each(embeddedTarget())('the size of RecordCharges answers on $name', (target) => {
  let db: Db;
  let drop: () => Promise<void>;
  let record: ReturnType<typeof recordChargesHandler>;
  let limits: LimitsService;

  beforeAll(async () => {
    const tdb = await target.create();
    drop = tdb.drop;
    db = openDatabase(tdb.config);
    await migrate(db);
    const pricing = new PricingService(db, new PriceTable(), clock);
    record = recordChargesHandler(new ChargesService(db, pricing, clock));
    limits = new LimitsService(db, pricing, clock);
  });

  afterAll(async () => {
    if (db) await closeDatabase(db);
    await drop?.();
  });

  /** Records the batch and checks every result against its share of the bound. */
  const recordChecked = async (charges: RecordChargeRequest[]) => {
    const answer = await record({ charges });
    answer.results.forEach((r, i) => {
      const c = charges[i];
      if (r.result?.$case === 'error') expect(resultBytes(r)).toBeLessThanOrEqual(ERROR_RESULT_BYTES);
      else expect(resultBytes(r)).toBeLessThanOrEqual(requestBytes(c) + SERVER_FIELDS_BYTES + (c.reservationId ? RESERVATION_BYTES : 0));
    });
    expect(RecordChargesResponse.encode(answer).finish().length).toBeLessThanOrEqual(answerBound({ charges }));
    return answer;
  };

  it('holds for batches of new, replayed, conflicting and invalid charges with the widest strings and metadata', async () => {
    // Text at 1 to 3 bytes per UTF-16 unit, up to the longest each field takes.
    const text = (max: number) => fc.string({ unit: fc.constantFrom('a', 'ü', '\u0800', '日'), maxLength: max });
    const valid = fc.record({
      idempotencyKey: text(MAX_KEY_LENGTH).filter((k) => k.length > 0),
      sessionKey: text(255),
      reference: text(255),
      endpoint: text(255),
      model: fc.constantFrom('gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4', 'not-priced-model'),
      errorMessage: text(4096),
      metadata: fc.dictionary(text(20).filter((k) => k.length > 0), fc.oneof(text(500), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean()), { maxKeys: 8 }),
      usageTime: fc.option(fc.integer({ min: 0, max: 3600 }).map((s) => ({ seconds: String(NOW.getTime() / 1000 - s), nanos: 999_999_999 })), { nil: undefined }),
    });
    const hostile = fc.record({
      // Out of range, as int64s can come on the wire.
      promptTokens: fc.constantFrom('-1', '1000000000001', '-9223372036854775808'),
      model: fc.constantFrom(...(HOSTILE.model as string[])),
      sessionKey: fc.constantFrom(...(HOSTILE.text as string[])),
      chargeType: fc.constantFrom(...(HOSTILE.enum as number[])),
    });
    const seen: RecordChargeRequest[] = [];
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof({ arbitrary: valid, weight: 3 }, { arbitrary: hostile, weight: 1 }, { arbitrary: fc.constant('replay' as const), weight: 1 }, { arbitrary: fc.constant('conflict' as const), weight: 1 }), { minLength: 1, maxLength: 30 }), async (picks) => {
        run++;
        const charges = picks.map((p, i) => {
          if ((p === 'replay' || p === 'conflict') && seen.length > 0) {
            const earlier = seen[i % seen.length];
            return p === 'replay' ? earlier : { ...earlier, reference: `${earlier.reference}!` };
          }
          return chargeRequest({ accountId: 'size', idempotencyKey: `run${run}-${i}`, ...(typeof p === 'object' ? p : {}) });
        });
        if (answerBound({ charges }) > MAX_MESSAGE_BYTES) {
          // Several of the hostile 1 MiB strings in one batch: its answer could pass 4 MiB, so it is refused whole, before any write.
          await expect(record({ charges })).rejects.toThrow(ValidationError);
          return;
        }
        const answer = await recordChecked(charges);
        answer.results.forEach((r, i) => r.result?.$case === 'recorded' && seen.push(charges[i]));
      }),
      { numRuns: 40 },
    );
    // The batches did record, replay and refuse.
    expect(seen.length).toBeGreaterThan(100);
  });

  it('holds for a charge that settles a reservation', async () => {
    const held = await limits.checkLimits(checkRequest({ accountId: 'size', reserve: true, idempotencyKey: '\u0800'.repeat(MAX_KEY_LENGTH), holdSeconds: 600, additionalTokens: '300' }));
    const reservationId = held.reservation?.reservationId;
    expect(reservationId).toBeDefined();
    const [result] = (await recordChecked([chargeRequest({ accountId: 'size', idempotencyKey: 'settles', reservationId })])).results;
    expect(result.result?.$case === 'recorded' && result.result.value.reservation?.status).toBeTruthy();
  });

  it('cuts a charge error to ERROR_RESULT_BYTES, keeping the first violations', () => {
    const many = new ValidationError(Array.from({ length: 200 }, (_, i) => ({ field: `field_${i}`, description: 'must be a value that this long description explains at some length' })));
    const r = errorResult(many);
    expect(resultBytes(r)).toBeLessThanOrEqual(ERROR_RESULT_BYTES);
    expect(r.result?.$case === 'error' && r.result.value.message).toMatch(/^invalid request: field_0: .*; and \d+ more violations$/);
    // The widest conflict: every content field differs, the longest key of 3-byte characters.
    const fields = ['user_id', 'session_key', 'provider', 'model', 'charge_type', 'request_type', 'prompt_tokens', 'completion_tokens', 'reasoning_tokens', 'cached_prompt_tokens', 'cache_write_tokens', 'cache_write_1h_tokens', 'call_count', 'reference', 'endpoint', 'response_time_ms', 'was_cached', 'had_error', 'error_message', 'metadata', 'reservation_id', 'tags', 'usage_time'];
    const conflict = errorResult(new IdempotencyConflictError('\u0800'.repeat(MAX_KEY_LENGTH), fields));
    expect(conflict.result?.$case === 'error' && conflict.result.value.code).toBe(6);
    expect(resultBytes(conflict)).toBeLessThanOrEqual(ERROR_RESULT_BYTES);
  });

  it('the proto comments and the README state the bound as the code computes it', () => {
    const docs = ['proto/metering/v1/metering_service.proto', 'README.md'].map((f) => readFileSync(join(ROOT, f), 'utf8').replace(/\s*\/\/\s*/g, ' '));
    const fits = ERROR_RESULT_BYTES - SERVER_FIELDS_BYTES;
    for (const doc of docs) {
      expect(doc).toContain(`at most ${SERVER_FIELDS_BYTES} bytes`);
      expect(doc).toContain(`${RESERVATION_BYTES} more with a`);
      expect(doc).toContain(`at least ${ERROR_RESULT_BYTES} bytes`);
      expect(doc).toContain(`1000 charges of at most ${fits} bytes each`);
    }
    expect(docs[0]).toContain(`(${fits - RESERVATION_BYTES} bytes each when every one has a reservation_id)`);
    expect(docs[0]).toContain(`A charge's error result is at most ${ERROR_RESULT_BYTES} bytes.`);
  });

  it('refuses before writing a batch whose bound is over the limit', async () => {
    const before = await db('charges').count<{ n: string }[]>('* as n');
    const batch = Array.from({ length: 1000 }, (_, i) => chargeRequest({ accountId: 'size', idempotencyKey: `over-${i}`, metadata: { note: 'x'.repeat(4096) } }));
    await expect(record({ charges: batch })).rejects.toThrow(/^invalid request: charges: the answer could exceed the 4194304-byte message limit/);
    expect(await db('charges').count<{ n: string }[]>('* as n')).toEqual(before);
  });
});
