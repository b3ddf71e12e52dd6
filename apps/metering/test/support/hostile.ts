/** Hostile values per kind of request field, for the fuzzing suites: each is invalid for a field of its kind. */
export const MIB = 'x'.repeat(1 << 20);
export const HOSTILE: Record<string, unknown[]> = {
  id: ['a b', 'x'.repeat(129), 'ü', "'; DROP TABLE charges;--", 'a\u0000b', MIB],
  requiredId: ['', 'a b', 'x'.repeat(129), "1' OR '1'='1", 'a\u0000b', MIB],
  provider: ['OpenAI', '-x', 'a'.repeat(65), 'open ai', "o'brien", MIB],
  model: [' gpt-4o', 'gpt-4o ', 'x'.repeat(256), 'a\u0000b', 'a\u0007b', MIB],
  key: ['', 'x'.repeat(256), 'a\nb', 'a\u0000b', MIB],
  text: ['x'.repeat(256), 'a\nb', 'a\u0000b', 'a\u009fb', MIB],
  int: ['-1', '1000000000001', '9223372036854775808', '-9223372036854775809', '1e3', 'NaN', '0x10', ' 1', '1.5', 'Infinity'],
  bigInt: ['-1', '1000000000000001', '9223372036854775808', '1e3', 'NaN', '0x10', ' 1', '1.5'],
  enum: [99, -1, 2 ** 31 - 1, 42],
  day: ['2025-02-30', '20250101', 'yesterday', '2025-1-1', '0000-01-01', MIB],
  requiredDay: ['', '2025-02-30', '20250101', 'yesterday'],
  money: [{ amount: 'NaN', currencyCode: 'USD' }, { amount: '1e3', currencyCode: 'USD' }, { amount: '-1', currencyCode: 'USD' }, { amount: '1', currencyCode: 'EUR' }, { amount: MIB, currencyCode: 'USD' }],
  factor: ['0', '-1', '100.0001', 'Infinity', 'NaN', '1e2', ''],
  time: [{ seconds: '99999999999999', nanos: 0 }, { seconds: '1', nanos: -1 }, { seconds: 'abc', nanos: 0 }, { seconds: '1', nanos: 1_000_000_000 }, { seconds: '-62135596801', nanos: 0 }],
  metadata: [
    JSON.parse('{"a":'.repeat(9) + '1' + '}'.repeat(9)),
    { big: 'x'.repeat(17 * 1024) },
    { bad: Number.NaN },
    ['not', 'an', 'object'],
    { 'k\u0000': 1 },
  ],
  rates: [
    { inputPerMillion: '-1', outputPerMillion: '1', cachedInputPerMillion: '', cacheWritePerMillion: '', cacheWrite1hPerMillion: '', reasoningPerMillion: '', perCall: '', longContext: undefined },
    { inputPerMillion: '1', outputPerMillion: 'NaN', cachedInputPerMillion: '', cacheWritePerMillion: '', cacheWrite1hPerMillion: '', reasoningPerMillion: '', perCall: '', longContext: undefined },
    { inputPerMillion: '1', outputPerMillion: '1', cachedInputPerMillion: '1e3', cacheWritePerMillion: '', cacheWrite1hPerMillion: '', reasoningPerMillion: '', perCall: '', longContext: undefined },
    undefined,
  ],
  pageSize: [-1, 1001, 2 ** 31 - 1],
  pageToken: ['garbage', 'eyJmIjoiIn0', MIB],
};

