import { ChargeType, RecordChargeRequest } from '@metering/contracts';

/** What one load-generator process runs: a method, a load shape, and how requests vary. */
export interface Workload {
  address: string;
  method: 'recordCharge' | 'recordCharges' | 'checkLimits' | 'getDailyUsage' | 'queryUsage';
  /** Fixed concurrency (calls in flight) or a fixed rate (calls per second, open loop). */
  concurrency: number;
  rate?: number;
  durationMs: number;
  /** Calls before the measurement starts (not counted). */
  warmupMs: number;
  accountId: string;
  /** Users the keys spread over; 1 puts every charge on one rollup row. */
  users: number;
  /** Share of RecordCharge calls that resend an acknowledged request (idempotent replays). */
  replayShare: number;
  /** Charges per RecordCharges call. */
  batchSize: number;
  /** Unique per run: idempotency keys start with it. */
  keyPrefix: string;
  /** Sent as `authorization: Bearer <apiKey>` (the service runs with API keys required, as deployed). */
  apiKey: string;
  /** Tag keys to declare as the account's dimensions (SetDimensions) before the run; its charges then carry those tags and one more. */
  dimensions?: string[];
  /** QueryUsage over the last 30 days: group_by (UsageGroupBy numbers), group_by_tags and granularity (UsageGranularity). */
  query?: { groupBy: number[]; groupByTags: string[]; granularity: number };
}

/** What it reports back. */
export interface LoadResult {
  calls: number;
  errors: number;
  errorCodes: Record<string, number>;
  elapsedMs: number;
  /** Calls (or, for RecordCharges, charges) per second. */
  throughput: number;
  latencyMs: { p50: number; p99: number; p999: number; max: number; mean: number };
  /** Charge ids the server acknowledged (RecordCharge / RecordCharges), and replays answered. */
  acked: string[];
  replays: number;
  replayedOk: number;
}

/** A realistic RecordCharge: gpt-4o-mini, a few hundred tokens, some cached. */
export function chargeRequest(accountId: string, userId: string, idempotencyKey: string, dimensions: string[] = []): RecordChargeRequest {
  // With dimensions: each declared key gets one of a few values (a bounded rollup), and one undeclared tag varies per call.
  const tags = dimensions.length ? { ...Object.fromEntries(dimensions.map((k, n) => [k, `${k}-${Math.floor(Math.random() * (3 + n * 2))}`])), request: idempotencyKey.slice(-32) } : {};
  return RecordChargeRequest.fromPartial({
    tags,
    accountId, userId, idempotencyKey, sessionKey: 'bench-session', provider: 'openai', model: 'gpt-4o-mini',
    chargeType: ChargeType.CHARGE_TYPE_COMPLETION, requestType: 0, promptTokens: '1200', completionTokens: '350',
    reasoningTokens: '0', cachedPromptTokens: '400', cacheWriteTokens: '0', cacheWrite1hTokens: '0', callCount: '0',
    reference: 'bench', endpoint: '/v1/chat/completions', responseTimeMs: '850', wasCached: false, hadError: false, reservationId: '',
    errorMessage: '', metadata: { team: 'bench' }, usageTime: undefined,
  });
}
