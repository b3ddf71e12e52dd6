import fc from 'fast-check';
import { diffChargeContent, RecordChargeRequestInput, validateRecordCharge } from './charge';
import { ValidationError } from './errors';
import { validateCheckLimits } from './limits';
import { checkTags, MAX_TAG_KEY_LENGTH, MAX_TAG_VALUE_LENGTH, MAX_TAGS, sameTags } from './tags';
import { Violations } from './validation';

const NOW = new Date('2026-11-23T12:00:00Z');
const request = (over: Partial<RecordChargeRequestInput> = {}): RecordChargeRequestInput => ({
  accountId: 'acme', userId: 'u1', idempotencyKey: 'k1', sessionKey: '', provider: 'openai', model: 'gpt-4o',
  chargeType: 0, requestType: 0, promptTokens: '100', completionTokens: '200', reasoningTokens: '0', cachedPromptTokens: '0',
  cacheWriteTokens: '0', cacheWrite1hTokens: '0', callCount: '0', reference: '', endpoint: '', responseTimeMs: undefined, wasCached: false, hadError: false,
  errorMessage: '', metadata: undefined, usageTime: undefined, ...over,
});
const fieldsOf = (f: () => unknown): string[] => {
  try {
    f();
  } catch (e) {
    if (e instanceof ValidationError) return e.violations.map((v) => v.field);
    throw e;
  }
  return [];
};
const many = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']));

describe('tags (issue 20)', () => {
  it('keeps valid tags with their keys in order, and the API key id given by the server', () => {
    const c = validateRecordCharge(request({ tags: { feature: 'summarize', env: 'prod', 'team.name': 'Søren & co' } }), NOW, 'k_0123456789ab');
    expect(Object.keys(c.tags)).toEqual(['env', 'feature', 'team.name']);
    expect(c.tags).toEqual({ feature: 'summarize', env: 'prod', 'team.name': 'Søren & co' });
    expect(c.apiKeyId).toBe('k_0123456789ab');
    expect(validateRecordCharge(request(), NOW).tags).toEqual({});
    expect(validateRecordCharge(request(), NOW).apiKeyId).toBe('');
    expect(validateRecordCharge(request({ tags: many(MAX_TAGS) }), NOW).tags).toEqual(many(MAX_TAGS));
  });

  it('refuses hostile tags naming the field: too many, over-long, control characters, bad keys, empty or padded values', () => {
    expect(fieldsOf(() => validateRecordCharge(request({ tags: many(MAX_TAGS + 1) }), NOW))).toEqual(['tags']);
    expect(fieldsOf(() => validateRecordCharge(request({ tags: { ['k'.repeat(MAX_TAG_KEY_LENGTH + 1)]: 'v' } }), NOW))).toEqual(['tags']);
    expect(fieldsOf(() => validateRecordCharge(request({ tags: { feature: 'x'.repeat(MAX_TAG_VALUE_LENGTH + 1) } }), NOW))).toEqual(['tags[feature]']);
    for (const bad of ['a\u0000b', 'line\nbreak', 'tab\there', '\u001b[31mred', 'del\u007f', 'c1\u0085', 'sep\u2028']) {
      expect(fieldsOf(() => validateRecordCharge(request({ tags: { feature: bad } }), NOW))).toEqual(['tags[feature]']);
    }
    for (const key of ['', 'Feature', '1st', '_x', 'a b', 'a\u0000', 'émoji', 'a/b']) {
      expect(fieldsOf(() => validateRecordCharge(request({ tags: { [key]: 'v' } }), NOW))).toEqual(['tags']);
    }
    expect(fieldsOf(() => validateRecordCharge(request({ tags: { feature: '' } }), NOW))).toEqual(['tags[feature]']);
    expect(fieldsOf(() => validateRecordCharge(request({ tags: { feature: ' padded' } }), NOW))).toEqual(['tags[feature]']);
    // With other bad fields, every one is named.
    expect(fieldsOf(() => validateRecordCharge(request({ userId: '', tags: { env: 'a\nb', Bad: 'x' } }), NOW)).sort()).toEqual(['tags', 'tags[env]', 'user_id']);
  });

  it('never echoes a control character or a long key in the description', () => {
    const v = new Violations();
    checkTags(v, 'tags', { ['\u0000'.repeat(5000)]: 'v' });
    expect(v.list).toHaveLength(1);
    expect(v.list[0].description.length).toBeLessThan(300);
    // eslint-disable-next-line no-control-regex
    expect(v.list[0].description).not.toMatch(/[\u0000-\u001f]/);
  });

  it('validates reservation tags alike', () => {
    const raw = { accountId: 'acme', userId: 'u1', additionalTokens: '0' };
    expect(validateCheckLimits({ ...raw, tags: { feature: 'summarize' } }, 'k_0123456789ab')).toMatchObject({ tags: { feature: 'summarize' }, apiKeyId: 'k_0123456789ab' });
    expect(fieldsOf(() => validateCheckLimits({ ...raw, tags: many(MAX_TAGS + 1) }))).toEqual(['tags']);
    expect(fieldsOf(() => validateCheckLimits({ ...raw, tags: { feature: 'a\u0007' } }))).toEqual(['tags[feature]']);
  });

  it('a retry with other tags is not a replay (tags are part of the charge); the API key is not', () => {
    const a = validateRecordCharge(request({ tags: { feature: 'a' } }), NOW, 'k_0123456789ab');
    expect(diffChargeContent(a, validateRecordCharge(request({ tags: { feature: 'a' } }), NOW, 'k_ba9876543210'))).toEqual([]);
    expect(diffChargeContent(a, validateRecordCharge(request({ tags: { feature: 'b' } }), NOW))).toEqual(['tags']);
    expect(diffChargeContent(a, validateRecordCharge(request(), NOW))).toEqual(['tags']);
  });

  it('any map of strings is either valid or refused naming tags, never thrown otherwise (property)', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 80 }), fc.string({ maxLength: 200 }), { maxKeys: 14 }), (tags) => {
        const v = new Violations();
        const out = checkTags(v, 'tags', tags);
        for (const x of v.list) expect(x.field === 'tags' || x.field.startsWith('tags[')).toBe(true);
        if (v.list.length === 0) expect(sameTags(out, tags)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});
