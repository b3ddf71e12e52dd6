import { status } from '@grpc/grpc-js';
import {
  CheckLimitsRequest,
  EstimateCostRequest,
  GetPriceRequest,
  GetDailyUsageRequest,
  MeteringServiceClient,
  PriceRates,
  PricingStatus,
  RecordChargeRequest,
  SetPriceRequest,
  ServiceTier,
  UsageFormat,
} from '@metering/contracts';
import { databaseTargets, requirePostgresInCi, TestDatabase } from '../support/databases';
import { call, grpcError, statusDetails } from '../support/grpc';
import { chargeRequest } from '../support/requests';
import { buildServer, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 13 end to end: each provider's documented usage object sent as it came
 * from the provider (RecordChargeRequest.usage + usage_format) to the real
 * server through the generated client, priced to the digit with the
 * catalogue's rates (named in each case with the price version, so a
 * regenerated catalogue shows up here): audio, image, cache, reasoning, tool
 * calls, time of day and service tiers. Then agreement with explicit counts,
 * hostile objects, idempotent replays, batches, EstimateCost, reservations and
 * the daily sums.
 */

interface Case {
  name: string;
  provider: string;
  model: string;
  format: UsageFormat;
  usage: Record<string, unknown>;
  over?: Partial<RecordChargeRequest>;
  version: string;
  /** Worked out by hand from the rates (USD per 1M tokens). */
  totalCost: string;
}

const GP = 'genai-prices@0.1.8';
const yesterdayAt = (hhmm: string) => ({ seconds: String(Date.parse(`${new Date(Date.now() - 86_400_000).toISOString().slice(0, 10)}T${hhmm}:00Z`) / 1000), nanos: 0 });

const CASES: Case[] = [
  {
    // o4-mini 1.1 / 0.275 / 4.4: 4,000 x 1.1 + 8,000 x 0.275 + 3,000 x 4.4 (reasoning inside, once) = 4,400 + 2,200 + 13,200
    name: 'OpenAI Chat Completions: cached and reasoning tokens', provider: 'openai', model: 'o4-mini', format: UsageFormat.USAGE_FORMAT_OPENAI_CHAT,
    usage: { prompt_tokens: 12000, completion_tokens: 3000, total_tokens: 15000, prompt_tokens_details: { cached_tokens: 8000, audio_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 2000 } },
    version: `${GP}:openai/o4-mini@2025-04-16`, totalCost: '0.0198',
  },
  {
    // gpt-realtime text 4 / 0.4 / 16, audio 32 / 0.4 / 64, image 5 / 0.5. Prompt: text 1,000 x 4 + cached text 1,000 x 0.4
    // + audio 3,200 x 32 + cached audio 1,800 x 0.4 + image 800 x 5 + cached image 200 x 0.5 = 4,000 + 400 + 102,400 + 720 + 4,000 + 100
    // = 111,620; completion: text 250 x 16 + audio 750 x 64 = 4,000 + 48,000 = 52,000; total 163,620.
    name: 'OpenAI Realtime: audio and image input, their cache reads, audio output', provider: 'openai', model: 'gpt-realtime', format: UsageFormat.USAGE_FORMAT_OPENAI_REALTIME,
    usage: {
      total_tokens: 9000, input_tokens: 8000, output_tokens: 1000,
      input_token_details: { text_tokens: 2000, audio_tokens: 5000, image_tokens: 1000, cached_tokens: 3000, cached_tokens_details: { text_tokens: 1000, audio_tokens: 1800, image_tokens: 200 } },
      output_token_details: { text_tokens: 250, audio_tokens: 750 },
    },
    version: `${GP}:openai/gpt-realtime@2026-12-01`, totalCost: '0.16362',
  },
  {
    // gpt-image-1.5 text 5 / 10, image in 8, image out 32: 50 x 5 + 300 x 8 + 200 x 10 + 4,000 x 32 = 250 + 2,400 + 2,000 + 128,000
    name: 'OpenAI Images API: image tokens in and out', provider: 'openai', model: 'gpt-image-1.5', format: UsageFormat.USAGE_FORMAT_OPENAI_RESPONSES,
    usage: { input_tokens: 350, input_tokens_details: { text_tokens: 50, image_tokens: 300 }, output_tokens: 4200, output_tokens_details: { text_tokens: 200, image_tokens: 4000 }, total_tokens: 4550 },
    version: `${GP}:openai/gpt-image-1.5@2026-12-01`, totalCost: '0.13265',
  },
  {
    // gpt-5 1.25 / 0.125 / 10, priority x2: (904 x 1.25 + 4,096 x 0.125 + 1,500 x 10) x 2 = 16,642 x 2 = 33,284; 2 web searches x 0.01 (not in the usage object).
    name: 'OpenAI Responses API in the priority tier, with web searches', provider: 'openai', model: 'gpt-5', format: UsageFormat.USAGE_FORMAT_OPENAI_RESPONSES,
    usage: { input_tokens: 5000, input_tokens_details: { cached_tokens: 4096 }, output_tokens: 1500, output_tokens_details: { reasoning_tokens: 1024 }, total_tokens: 6500 },
    over: { serviceTier: ServiceTier.SERVICE_TIER_PRIORITY, toolCalls: { web_search: '2' } },
    version: `${GP}:openai/gpt-5@2025-08-07`, totalCost: '0.053284',
  },
  {
    // claude-sonnet-4-5 3 / 0.3 / 3.75 / 6 / 15: 2,000 x 3 + 10,000 x 0.3 + 3,000 x 3.75 + 2,000 x 6 + 800 x 15
    // = 6,000 + 3,000 + 11,250 + 12,000 + 12,000 = 44,250; 3 web searches x 0.01 = 0.03.
    name: 'Anthropic Messages: cache reads, 5-minute and 1-hour writes, web searches', provider: 'anthropic', model: 'claude-sonnet-4-5', format: UsageFormat.USAGE_FORMAT_ANTHROPIC_MESSAGES,
    usage: {
      input_tokens: 2000, cache_read_input_tokens: 10000, cache_creation_input_tokens: 5000, cache_creation: { ephemeral_5m_input_tokens: 3000, ephemeral_1h_input_tokens: 2000 },
      output_tokens: 800, server_tool_use: { web_search_requests: 3 }, service_tier: 'standard',
    },
    version: `${GP}:anthropic/claude-sonnet-4-5@2025-09-29`, totalCost: '0.07425',
  },
  {
    // The same in the batch tier (usage.service_tier): tokens x 0.5 = 22,125; web searches stay 0.03.
    name: 'Anthropic Message Batches: the tier from the usage object', provider: 'anthropic', model: 'claude-sonnet-4-5', format: UsageFormat.USAGE_FORMAT_ANTHROPIC_MESSAGES,
    usage: {
      input_tokens: 2000, cache_read_input_tokens: 10000, cache_creation_input_tokens: 5000, cache_creation: { ephemeral_5m_input_tokens: 3000, ephemeral_1h_input_tokens: 2000 },
      output_tokens: 800, server_tool_use: { web_search_requests: 3 }, service_tier: 'batch',
    },
    version: `${GP}:anthropic/claude-sonnet-4-5@2025-09-29`, totalCost: '0.052125',
  },
  {
    // gemini-2.5-flash 0.30 / 0.03 / 2.50, audio 1.00 / 0.10: text 4,000 x 0.30 + cached text 2,000 x 0.03 + audio 3,000 x 1
    // + cached audio 2,000 x 0.10 + image 1,000 x 0.30 = 1,200 + 60 + 3,000 + 200 + 300 = 4,760; output 4,000 x 2.50 (thinking included) = 10,000.
    name: 'Gemini usageMetadata: thinking, cache, audio and image modalities', provider: 'googleai', model: 'gemini-2.5-flash', format: UsageFormat.USAGE_FORMAT_GEMINI,
    usage: {
      promptTokenCount: 12000, cachedContentTokenCount: 4000, candidatesTokenCount: 1500, thoughtsTokenCount: 2500, totalTokenCount: 16000,
      promptTokensDetails: [{ modality: 'TEXT', tokenCount: 6000 }, { modality: 'AUDIO', tokenCount: 5000 }, { modality: 'IMAGE', tokenCount: 1000 }],
      cacheTokensDetails: [{ modality: 'TEXT', tokenCount: 2000 }, { modality: 'AUDIO', tokenCount: 2000 }],
    },
    version: 'googleai/gemini-2.5-flash@2025-11-07', totalCost: '0.01476',
  },
  {
    // gemini-2.5-flash-image 0.3 / 2.5, image out 30: 500 x 0.3 + 100 x 2.5 + 1,290 x 30 = 150 + 250 + 38,700
    name: 'Gemini image output', provider: 'googleai', model: 'gemini-2.5-flash-image', format: UsageFormat.USAGE_FORMAT_GEMINI,
    usage: { promptTokenCount: 300, toolUsePromptTokenCount: 200, candidatesTokenCount: 1390, candidatesTokensDetails: [{ modality: 'IMAGE', tokenCount: 1290 }, { modality: 'TEXT', tokenCount: 100 }] },
    version: `${GP}:google/gemini-2.5-flash-image@2026-12-01`, totalCost: '0.0391',
  },
  {
    // Bedrock Claude Sonnet 4.5 (regional) 3.3 / 0.33 / 4.125 / 16.5: 1,000 x 3.3 + 2,500 x 0.33 + 500 x 4.125 + 300 x 16.5 = 3,300 + 825 + 2,062.5 + 4,950
    name: 'AWS Bedrock Converse: cache reads and writes outside inputTokens', provider: 'aws', model: 'us.anthropic.claude-sonnet-4-5-20250929-v1:0', format: UsageFormat.USAGE_FORMAT_BEDROCK_CONVERSE,
    usage: { inputTokens: 1000, outputTokens: 300, totalTokens: 4300, cacheReadInputTokens: 2500, cacheWriteInputTokens: 500 },
    version: `${GP}:aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0@2026-12-01`, totalCost: '0.0111375',
  },
  {
    // deepseek-v4-flash off-peak 0.22 / 0.007 / 0.66: 4,000 x 0.22 + 6,000 x 0.007 + 1,000 x 0.66 = 880 + 42 + 660
    name: 'DeepSeek off-peak', provider: 'deepseek', model: 'deepseek-v4-flash', format: UsageFormat.USAGE_FORMAT_DEEPSEEK,
    usage: { prompt_tokens: 10000, completion_tokens: 1000, total_tokens: 11000, prompt_cache_hit_tokens: 6000, prompt_cache_miss_tokens: 4000, completion_tokens_details: { reasoning_tokens: 400 } },
    over: { usageTime: yesterdayAt('12:00') },
    version: `${GP}:deepseek/deepseek-v4-flash@2026-08-17`, totalCost: '0.001582',
  },
  {
    // peak window 01:00-04:00 UTC 0.44 / 0.014 / 1.32: 1,760 + 84 + 1,320
    name: 'DeepSeek in its peak window', provider: 'deepseek', model: 'deepseek-v4-flash', format: UsageFormat.USAGE_FORMAT_DEEPSEEK,
    usage: { prompt_tokens: 10000, completion_tokens: 1000, total_tokens: 11000, prompt_cache_hit_tokens: 6000, prompt_cache_miss_tokens: 4000, completion_tokens_details: { reasoning_tokens: 400 } },
    over: { usageTime: yesterdayAt('02:00') },
    version: `${GP}:deepseek/deepseek-v4-flash@2026-08-17`, totalCost: '0.003164',
  },
  {
    // command-a 2.5 / 10: 700 x 2.5 + 150 x 10
    name: 'Cohere v2 Chat: billed units', provider: 'cohere', model: 'command-a-03-2025', format: UsageFormat.USAGE_FORMAT_COHERE,
    usage: { billed_units: { input_tokens: 700, output_tokens: 150 }, tokens: { input_tokens: 900, output_tokens: 150 } },
    version: `${GP}:cohere/command-a@2025-03-13`, totalCost: '0.00325',
  },
  {
    // mistral-medium-latest (Medium 3.5) 1.5 / 0.15 / 7.5: 2,000 x 1.5 + 1,000 x 0.15 + 700 x 7.5 = 3,000 + 150 + 5,250
    name: 'Mistral (OpenAI-compatible)', provider: 'mistral', model: 'mistral-medium-latest', format: UsageFormat.USAGE_FORMAT_OPENAI_COMPATIBLE,
    usage: { prompt_tokens: 3000, completion_tokens: 700, total_tokens: 3700, prompt_tokens_details: { cached_tokens: 1000 } },
    version: `${GP}:mistral/mistral-medium-latest@2026-06-16`, totalCost: '0.0084',
  },
  {
    // llama-3.3-70b-versatile 0.59 / 0.79: 210 x 0.59 + 95 x 0.79 = 123.9 + 75.05 (the fractional timings are not counts)
    name: 'Groq (OpenAI-compatible)', provider: 'groq', model: 'llama-3.3-70b-versatile', format: UsageFormat.USAGE_FORMAT_OPENAI_COMPATIBLE,
    usage: { queue_time: 0.0513, prompt_tokens: 210, prompt_time: 0.0122, completion_tokens: 95, completion_time: 0.0791, total_tokens: 305, total_time: 0.0913 },
    version: `${GP}:groq/llama-3.3-70b-versatile@2026-12-01`, totalCost: '0.00019895',
  },
  {
    // grok-4 3 / 0.75 / 15, reasoning outside completion_tokens: 26 x 3 + 6 x 0.75 + (9 + 94) x 15 = 78 + 4.5 + 1,545
    name: 'xAI: reasoning tokens outside completion_tokens', provider: 'xai', model: 'grok-4', format: UsageFormat.USAGE_FORMAT_XAI,
    usage: { prompt_tokens: 32, completion_tokens: 9, total_tokens: 135, prompt_tokens_details: { text_tokens: 32, image_tokens: 0, cached_tokens: 6 }, completion_tokens_details: { reasoning_tokens: 94 } },
    version: 'xai/grok-4@2025-07-09', totalCost: '0.0016275',
  },
];

/** A RecordCharge with a usage object and no explicit counts. */
const withUsage = (c: Pick<Case, 'provider' | 'model' | 'format' | 'usage' | 'over'>, key: string, over: Partial<RecordChargeRequest> = {}) =>
  chargeRequest({ provider: c.provider, model: c.model, promptTokens: '0', completionTokens: '0', usage: c.usage, usageFormat: c.format, idempotencyKey: key, ...c.over, ...over });

/** The fields an INVALID_ARGUMENT names (or the code and message of another error). */
const badFields = async (p: Promise<unknown>) => {
  const err = await grpcError(p);
  if (err.code !== status.INVALID_ARGUMENT) return [`code ${err.code}: ${err.details}`];
  return (statusDetails(err).badRequest?.fieldViolations ?? []).map((f) => f.field).sort();
};

beforeAll(() => buildServer());
requirePostgresInCi();

describe.each(databaseTargets())('provider usage objects on $name', (target) => {
  let tdb: TestDatabase;
  let server: ServerProcess;
  let client: MeteringServiceClient;
  const today = new Date().toISOString().slice(0, 10);

  beforeAll(async () => {
    tdb = await target.create();
    server = await startServer(tdb.config);
    client = server.client;
  });

  afterAll(async () => {
    await server?.stop();
    await tdb?.drop();
  });

  it.each(CASES.map((c) => [c.name, c] as const))('prices %s to the digit', async (_name, c) => {
    const { charge } = await call(client.recordCharge, client, withUsage(c, `case:${c.name}`, { accountId: 'cases' }));
    expect(charge).toMatchObject({ pricingStatus: PricingStatus.PRICING_STATUS_PRICED, priceVersion: c.version, totalCost: { amount: c.totalCost, currencyCode: 'USD' } });
    const estimate = await call(client.estimateCost, client, EstimateCostRequest.fromPartial({ provider: c.provider, model: c.model, usage: c.usage, usageFormat: c.format, ...c.over, at: c.over?.usageTime }));
    expect(estimate.totalCost?.amount).toBe(c.totalCost);
  });

  it('stores the mapped classes, the tier and the tool calls on the charge', async () => {
    const anthropic = CASES.find((c) => c.name.startsWith('Anthropic Message Batches'));
    const realtime = CASES.find((c) => c.name.startsWith('OpenAI Realtime'));
    if (!anthropic || !realtime) throw new Error('missing case');
    const a = await call(client.recordCharge, client, withUsage(anthropic, 'stored-a'));
    expect(a.charge).toMatchObject({ serviceTier: ServiceTier.SERVICE_TIER_BATCH, toolCalls: { web_search: '3' }, tokens: { promptTokens: '17000', cachedPromptTokens: '10000', cacheWriteTokens: '5000', cacheWrite1hTokens: '2000', totalTokens: '17800' } });
    const r = await call(client.recordCharge, client, withUsage(realtime, 'stored-r'));
    expect(r.charge?.tokens).toMatchObject({ audioPromptTokens: '5000', cachedAudioPromptTokens: '1800', imagePromptTokens: '1000', cachedImagePromptTokens: '200', audioCompletionTokens: '750', imageCompletionTokens: '0' });
  });

  it('fails closed for a tier the model has no price for', async () => {
    const { charge } = await call(client.recordCharge, client, withUsage(CASES[0], 'no-priority', { serviceTier: ServiceTier.SERVICE_TIER_PRIORITY }));
    expect(charge).toMatchObject({ pricingStatus: PricingStatus.PRICING_STATUS_UNPRICED, totalCost: undefined, serviceTier: ServiceTier.SERVICE_TIER_PRIORITY });
    const o4 = { provider: 'openai', model: 'o4-mini', usage: CASES[0].usage, usageFormat: CASES[0].format, serviceTier: ServiceTier.SERVICE_TIER_PRIORITY };
    const estimate = await call(client.estimateCost, client, EstimateCostRequest.fromPartial(o4));
    expect(estimate).toMatchObject({ pricingStatus: PricingStatus.PRICING_STATUS_UNPRICED, totalCost: undefined });
    const hold = await grpcError(call(client.checkLimits, client, CheckLimitsRequest.fromPartial({ accountId: 'acme', userId: 'u1', estimate: o4 })));
    expect(hold.code).toBe(status.FAILED_PRECONDITION);
    expect(hold.details).toMatch(/no priority service tier price/);
  });

  it('gives the same cost for explicit counts that agree, and names the fields that disagree (nothing written)', async () => {
    const chat = CASES[0];
    const agreeing = await call(client.recordCharge, client, withUsage(chat, 'agree', { promptTokens: '12000', cachedPromptTokens: '8000', reasoningTokens: '2000' }));
    expect(agreeing.charge?.totalCost?.amount).toBe(chat.totalCost);
    const explicit = await call(client.recordCharge, client, chargeRequest({
      provider: 'openai', model: 'o4-mini', idempotencyKey: 'explicit', promptTokens: '12000', cachedPromptTokens: '8000', completionTokens: '3000', reasoningTokens: '2000',
    }));
    expect(explicit.charge?.totalCost?.amount).toBe(chat.totalCost);

    expect(await badFields(call(client.recordCharge, client, withUsage(chat, 'disagree', { promptTokens: '100', reasoningTokens: '1' })))).toEqual(['prompt_tokens', 'reasoning_tokens']);
    const anthropic = CASES[4];
    expect(await badFields(call(client.recordCharge, client, withUsage(anthropic, 'disagree', { toolCalls: { web_search: '1' }, serviceTier: ServiceTier.SERVICE_TIER_BATCH }))))
      .toEqual(['service_tier', 'tool_calls[web_search]']);
    // Nothing was written under the key: it is free for a correct charge.
    const retry = await call(client.recordCharge, client, withUsage(chat, 'disagree'));
    expect(retry).toMatchObject({ replayed: false, charge: { totalCost: { amount: chat.totalCost } } });
  });

  it('refuses hostile usage objects with INVALID_ARGUMENT naming the field, and writes nothing', async () => {
    const chat = (usage: Record<string, unknown>, over: Partial<RecordChargeRequest> = {}) =>
      call(client.recordCharge, client, withUsage({ ...CASES[0], usage }, 'hostile', { accountId: 'hostile', ...over }));
    let deep: Record<string, unknown> = { prompt_tokens: 1 };
    for (let i = 0; i < 40; i++) deep = { prompt_tokens: 1, nested: deep };
    const cases: Array<[() => Promise<unknown>, string[]]> = [
      [() => chat({ prompt_tokens: 'ten', completion_tokens: 1 }), ['usage.prompt_tokens']],
      [() => chat({ prompt_tokens: -5, completion_tokens: 1 }), ['usage.prompt_tokens']],
      [() => chat({ prompt_tokens: 10.5, completion_tokens: 1 }), ['usage.prompt_tokens']],
      [() => chat({ prompt_tokens: 1e20, completion_tokens: 1 }), ['usage.prompt_tokens']],
      [() => chat({ prompt_tokens: 10, completion_tokens: 1, prompt_tokens_details: 'cached' }), ['usage.prompt_tokens_details']],
      [() => chat({ prompt_tokens: 10, completion_tokens: 1, prompt_tokens_details: { cached_tokens: 11 } }), ['usage']],
      [() => chat(deep), [`usage${'["nested"]'.repeat(33)}`]],
      [() => chat({ prompt_tokens: 10 }, { usageFormat: 99 as UsageFormat }), ['usage_format']],
      [() => chat({ prompt_tokens: 10 }, { usageFormat: UsageFormat.USAGE_FORMAT_UNSPECIFIED }), ['usage_format']],
      [() => call(client.recordCharge, client, chargeRequest({ accountId: 'hostile', idempotencyKey: 'hostile', usageFormat: UsageFormat.USAGE_FORMAT_GEMINI })), ['usage']],
      [() => chat({ prompt_tokens: 10, completion_tokens: 1 }, { toolCalls: { 'Web Search': '1', web_search: '-1' } }), ['tool_calls', 'tool_calls[web_search]']],
      [() => chat({ prompt_tokens: 10, completion_tokens: 1 }, { serviceTier: 42 as ServiceTier }), ['service_tier']],
    ];
    for (const [n, [send, fields]] of cases.entries()) expect([n, await badFields(send())]).toEqual([n, fields]);
    const { totals } = await call(client.getDailyUsage, client, GetDailyUsageRequest.fromPartial({ accountId: 'hostile', startDate: today, endDate: today }));
    expect(totals?.messageCount).toBe('0');
  });

  it('replays the same key with the same billed content, however it is sent, and refuses other content', async () => {
    const chat = CASES[0];
    const first = await call(client.recordCharge, client, withUsage(chat, 'idem'));
    const again = await call(client.recordCharge, client, withUsage(chat, 'idem'));
    expect(again).toMatchObject({ replayed: true, charge: { chargeId: first.charge?.chargeId } });
    const asCounts = await call(client.recordCharge, client, chargeRequest({
      provider: 'openai', model: 'o4-mini', idempotencyKey: 'idem', promptTokens: '12000', cachedPromptTokens: '8000', completionTokens: '3000', reasoningTokens: '2000',
    }));
    expect(asCounts).toMatchObject({ replayed: true, charge: { chargeId: first.charge?.chargeId } });
    const other = await grpcError(call(client.recordCharge, client, withUsage({ ...chat, usage: { ...chat.usage, completion_tokens: 3001 } }, 'idem')));
    expect(other.code).toBe(status.ALREADY_EXISTS);
  });

  it('takes usage objects in a batch, sums the new classes per day, and prices reservations from them', async () => {
    const realtime = CASES[1];
    const gemini = CASES[6];
    const { results } = await call(client.recordCharges, client, {
      charges: [withUsage(realtime, 'batch-1', { accountId: 'sums' }), withUsage(gemini, 'batch-2', { accountId: 'sums' })],
    });
    expect(results.map((r) => (r.result?.$case === 'recorded' ? r.result.value.charge?.totalCost?.amount : r.result))).toEqual([realtime.totalCost, gemini.totalCost]);
    const { totals } = await call(client.getDailyUsage, client, GetDailyUsageRequest.fromPartial({ accountId: 'sums', startDate: today, endDate: today }));
    // 0.16362 + 0.01476; audio input 5,000 + 5,000, cached audio 1,800 + 2,000, image input 1,000 + 1,000, audio output 750.
    expect(totals).toMatchObject({
      messageCount: '2', totalCost: { amount: '0.17838' },
      tokens: { audioPromptTokens: '10000', cachedAudioPromptTokens: '3800', imagePromptTokens: '2000', cachedImagePromptTokens: '200', audioCompletionTokens: '750', reasoningTokens: '2500' },
    });

    const check = await call(client.checkLimits, client, CheckLimitsRequest.fromPartial({
      accountId: 'sums', userId: 'u1', reserve: true, idempotencyKey: 'hold-1',
      estimate: { provider: realtime.provider, model: realtime.model, usage: realtime.usage, usageFormat: realtime.format },
    }));
    expect(check.reservation).toMatchObject({ heldCost: { amount: realtime.totalCost }, heldTokens: '9000' });
    expect(await badFields(call(client.checkLimits, client, CheckLimitsRequest.fromPartial({
      accountId: 'sums', userId: 'u1', estimate: { provider: 'openai', model: 'gpt-realtime', usage: { input_tokens: -1 }, usageFormat: realtime.format },
    })))).toEqual(['estimate.usage.input_tokens']);
  });

  it('sets, shows and bills an operator price with the new rates: audio, image, per request, tools, time of day, tiers', async () => {
    const rates = PriceRates.fromPartial({
      inputPerMillion: '2', outputPerMillion: '8', cachedInputPerMillion: '0.5', inputAudioPerMillion: '40', cachedInputAudioPerMillion: '2.5', outputAudioPerMillion: '80',
      inputImagePerMillion: '5', outputImagePerMillion: '30', perRequest: '0.001', toolCalls: { web_search: '0.025' },
      timeOfDay: [{ startTime: '01:00', endTime: '04:00', inputPerMillion: '4', outputPerMillion: '16' }],
      serviceTiers: { batch: '0.5', flex: '', priority: '' },
    });
    const set = await call(client.setPrice, client, SetPriceRequest.fromPartial({
      accountId: 'voice', provider: 'selfhosted', model: 'voice-1', effectiveTime: { seconds: '946684800', nanos: 0 }, rates, source: 'contract', actor: 'ops',
    }));
    const { price } = await call(client.getPrice, client, GetPriceRequest.fromPartial({ accountId: 'voice', provider: 'selfhosted', model: 'voice-1' }));
    expect(price?.version).toBe(set.price?.version);
    expect(price?.rates).toMatchObject({
      inputAudioPerMillion: '40', cachedInputAudioPerMillion: '2.5', outputAudioPerMillion: '80', inputImagePerMillion: '5', outputImagePerMillion: '30',
      cachedInputImagePerMillion: '', perRequest: '0.001', toolCalls: { web_search: '0.025' }, serviceTiers: { batch: '0.5', flex: '', priority: '' },
      timeOfDay: [{ startTime: '01:00', endTime: '04:00', inputPerMillion: '4', outputPerMillion: '16', cachedInputPerMillion: '' }],
    });
    const usage = {
      prompt_tokens: 10000, completion_tokens: 2000,
      prompt_tokens_details: { cached_tokens: 3000, audio_tokens: 4000 }, completion_tokens_details: { audio_tokens: 1500 },
    };
    const voice = { provider: 'selfhosted', model: 'voice-1', format: UsageFormat.USAGE_FORMAT_OPENAI_CHAT, usage };
    // Off-peak: text 3,000 x 2 + cached 3,000 x 0.5 + audio 4,000 x 40 = 6,000 + 1,500 + 160,000 = 167,500 (the cache reads are text:
    // Chat Completions does not split them by modality); output text 500 x 8 + audio 1,500 x 80 = 4,000 + 120,000 = 124,000;
    // calls: 0.001 per request + 2 web searches x 0.025 = 0.051. 0.1675 + 0.124 + 0.051 = 0.3425.
    const offPeak = await call(client.recordCharge, client, withUsage(voice, 'voice-1', { accountId: 'voice', toolCalls: { web_search: '2' }, usageTime: yesterdayAt('12:00') }));
    expect(offPeak.charge).toMatchObject({ priceVersion: set.price?.version, callCost: { amount: '0.051' }, totalCost: { amount: '0.3425' } });
    // Batch: the token costs halve (0.14575), the calls do not: 0.19675.
    const batch = await call(client.recordCharge, client, withUsage(voice, 'voice-2', { accountId: 'voice', toolCalls: { web_search: '2' }, serviceTier: ServiceTier.SERVICE_TIER_BATCH, usageTime: yesterdayAt('12:00') }));
    expect(batch.charge?.totalCost?.amount).toBe('0.19675');
    // Peak window: input 4 (cached and audio input fall back to it), output 16 (audio output too): 10,000 x 4 + 2,000 x 16 = 72,000; + 0.001.
    const peak = await call(client.recordCharge, client, withUsage(voice, 'voice-3', { accountId: 'voice', usageTime: yesterdayAt('02:30') }));
    expect(peak.charge?.totalCost?.amount).toBe('0.073');
    expect(await badFields(call(client.setPrice, client, SetPriceRequest.fromPartial({
      accountId: 'voice', provider: 'selfhosted', model: 'voice-2', source: 'x',
      rates: PriceRates.fromPartial({ inputPerMillion: '1', outputPerMillion: '1', outputAudioPerMillion: '-1', toolCalls: { 'Web Search': '1' }, timeOfDay: [{ startTime: '9am', endTime: '10:00', inputPerMillion: '1', outputPerMillion: '1' }], serviceTiers: { batch: '0', flex: '', priority: '' } }),
    })))).toEqual(['rates.output_audio_per_million', 'rates.service_tiers.batch', 'rates.time_of_day[0].start_time', 'rates.tool_calls']);
  });
});
