import { tokenCounts } from '@metering/pricing';
import { billedFields, checkBilledUsage, BilledUsageInput } from './billed-usage';
import { Violations } from './validation';

/** checkBilledUsage: explicit counts, a usage object, or both (which must agree). */
const check = (raw: BilledUsageInput) => {
  const v = new Violations();
  const counts = checkBilledUsage(v, raw);
  return { counts, fields: v.list.map((x) => x.field) };
};
const OPENAI = 1;
const ANTHROPIC = 3;
const anthropic = { input_tokens: 100, cache_read_input_tokens: 50, output_tokens: 20, server_tool_use: { web_search_requests: 2 }, service_tier: 'batch' };

describe('checkBilledUsage', () => {
  it('takes explicit counts, tool calls (zero counts dropped, names sorted) and the tier', () => {
    const { counts, fields } = check({ promptTokens: '10', completionTokens: '5', toolCalls: { web_search: '2', file_search: '0', code_execution: '1' }, serviceTier: 2 });
    expect(fields).toEqual([]);
    expect(counts).toEqual({ tokens: tokenCounts({ promptTokens: 10, completionTokens: 5 }), toolCalls: { code_execution: 1, web_search: 2 }, serviceTier: 'batch' });
    expect(Object.keys(counts.toolCalls)).toEqual(['code_execution', 'web_search']);
  });

  it('maps a usage object, with its tool calls and tier', () => {
    const { counts, fields } = check({ usage: anthropic, usageFormat: ANTHROPIC });
    expect(fields).toEqual([]);
    expect(counts).toEqual({ tokens: tokenCounts({ promptTokens: 150, cachedPromptTokens: 50, completionTokens: 20 }), toolCalls: { web_search: 2 }, serviceTier: 'batch' });
  });

  it('accepts explicit fields that agree, adds tools the object does not report, and names every disagreement', () => {
    const agree = check({ usage: anthropic, usageFormat: ANTHROPIC, promptTokens: '150', toolCalls: { web_search: '2', code_execution: '1' }, serviceTier: 2 });
    expect(agree.fields).toEqual([]);
    expect(agree.counts.toolCalls).toEqual({ code_execution: 1, web_search: 2 });
    const disagree = check({ usage: anthropic, usageFormat: ANTHROPIC, promptTokens: '100', cachedPromptTokens: '49', toolCalls: { web_search: '1' }, serviceTier: 4 });
    expect(disagree.fields).toEqual(['prompt_tokens', 'cached_prompt_tokens', 'tool_calls[web_search]', 'service_tier']);
  });

  it('wants a format with an object and an object with a format', () => {
    expect(check({ usage: { prompt_tokens: 1 } }).fields).toEqual(['usage_format']);
    expect(check({ usage: { prompt_tokens: 1 }, usageFormat: 77 }).fields).toEqual(['usage_format']);
    expect(check({ usageFormat: OPENAI }).fields).toEqual(['usage']);
  });

  it('names explicit counts that do not nest, and bad tool calls', () => {
    expect(check({ promptTokens: '5', audioPromptTokens: '6' }).fields).toEqual(['prompt_tokens']);
    expect(check({ toolCalls: { 'Web-Search': '1', web_search: '1000001' } }).fields).toEqual(['tool_calls', 'tool_calls[web_search]']);
    expect(check({ toolCalls: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`t${i}`, '1'])) }).fields).toEqual(['tool_calls']);
  });

  it('compares what is billed, not how it was sent', () => {
    const fromObject = check({ usage: { prompt_tokens: 10, completion_tokens: 5, prompt_tokens_details: { cached_tokens: 4 } }, usageFormat: OPENAI }).counts;
    const fromCounts = check({ promptTokens: '10', completionTokens: '5', cachedPromptTokens: '4' }).counts;
    expect(billedFields(fromObject, fromCounts).filter(([, a, b]) => a !== b)).toEqual([]);
    const other = check({ promptTokens: '10', completionTokens: '5', cachedPromptTokens: '4', serviceTier: 2 }).counts;
    expect(billedFields(fromObject, other).filter(([, a, b]) => a !== b).map(([f]) => f)).toEqual(['service_tier']);
  });
});
