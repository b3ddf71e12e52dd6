import { GENAI_ATTRIBUTES, genAiUsageOf } from './genai-spans';

describe('GenAI span attributes -> usage', () => {
  it('reads the conventions\' current names and the older ones alike', () => {
    const current = genAiUsageOf({ 'gen_ai.provider.name': 'aws.bedrock', 'gen_ai.request.model': 'm', 'gen_ai.response.model': 'm-2025', 'gen_ai.usage.input_tokens': 100, 'gen_ai.usage.output_tokens': 20, 'gen_ai.usage.reasoning.output_tokens': 5 });
    const older = genAiUsageOf({ 'gen_ai.system': 'aws.bedrock', 'gen_ai.request.model': 'm-2025', 'gen_ai.usage.prompt_tokens': '100', 'gen_ai.usage.completion_tokens': '20', 'gen_ai.usage.reasoning_tokens': 5 });
    for (const mapped of [current, older]) {
      expect(mapped).toMatchObject({ kind: 'usage', usage: { provider: 'aws', model: 'm-2025', promptTokens: 100, completionTokens: 20, reasoningTokens: 5 } });
    }
  });

  it('keeps cache reads inside the input when they fit, and adds them when the instrumentation left them out', () => {
    const inside = genAiUsageOf({ 'gen_ai.system': 'openai', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': 1490, 'gen_ai.usage.output_tokens': 1, 'gen_ai.usage.cache_read.input_tokens': 1024 });
    expect(inside).toMatchObject({ usage: { promptTokens: 1490, cachedPromptTokens: 1024 } });
    const outside = genAiUsageOf({ 'gen_ai.system': 'anthropic', 'gen_ai.request.model': 'c', 'gen_ai.usage.input_tokens': 25, 'gen_ai.usage.output_tokens': 1, 'gen_ai.usage.cache_read_input_tokens': 3000, 'gen_ai.usage.cache_creation_input_tokens': 1200 });
    expect(outside).toMatchObject({ usage: { promptTokens: 25 + 3000 + 1200, cachedPromptTokens: 3000, cacheWriteTokens: 1200 } });
  });

  it('is no charge without a provider or without usage', () => {
    expect(genAiUsageOf({ 'http.method': 'GET' })).toEqual({ kind: 'not_genai' });
    expect(genAiUsageOf({ 'gen_ai.system': 'openai', 'gen_ai.request.model': 'gpt-4o' })).toEqual({ kind: 'not_genai' });
  });

  it.each([
    [{ 'gen_ai.usage.input_tokens': 1.5 }, 'gen_ai.usage.input_tokens'],
    [{ 'gen_ai.usage.input_tokens': -1 }, 'gen_ai.usage.input_tokens'],
    [{ 'gen_ai.usage.input_tokens': '1e3' }, 'gen_ai.usage.input_tokens'],
    [{ 'gen_ai.usage.input_tokens': 10, 'gen_ai.usage.output_tokens': 1, 'gen_ai.usage.reasoning_tokens': 2 }, 'gen_ai.usage.reasoning_tokens'],
  ])('names the attribute of a bad count %j', (attributes, attribute) => {
    expect(genAiUsageOf({ 'gen_ai.system': 'openai', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.output_tokens': 1, ...attributes })).toMatchObject({ kind: 'problem', attribute });
  });

  it('needs a model when there is usage', () => {
    expect(genAiUsageOf({ 'gen_ai.system': 'openai', 'gen_ai.usage.input_tokens': 1 })).toMatchObject({ kind: 'problem', attribute: GENAI_ATTRIBUTES.model[1] });
  });
});
