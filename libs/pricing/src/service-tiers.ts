import type { PriceRates, ServiceTier } from './rates';

/**
 * Curated service-tier factors: the price database the catalogue is built
 * from has no batch / flex / priority prices, so these are ours, each with
 * its source. A factor multiplies every token rate of the model's price in
 * effect (see PriceRates.serviceTiers); per-call, per-request and tool prices
 * stay. The generator (tools/prices) writes them into the catalogue rows, so a
 * changed factor is a new dated row like any price change; a row that sets its
 * own serviceTiers keeps them. A tier
 * listed for no model leaves its charges unpriced (fail closed): e.g. OpenAI
 * priority for o4-mini ($2.00 / $0.50 / $8.00 against $1.10 / $0.275 / $4.40)
 * and gpt-4o-mini are not one exact factor of the standard rates, so they are
 * not listed; an operator price (SetPrice) can still give them.
 */
export interface TierSource {
  factors: Partial<Record<ServiceTier, string>>;
  source: string;
}

const OPENAI_BATCH = 'OpenAI Batch API: 50% of the standard rates (platform.openai.com/docs/guides/batch)';
const OPENAI_FLEX = 'OpenAI Flex processing: the Batch rates (platform.openai.com/docs/guides/flex-processing)';
const OPENAI_PRIORITY = 'OpenAI Priority processing price list (openai.com/api-priority-processing), divided by the standard rates';

/** Factors every model of a provider gets. */
const BY_PROVIDER: Record<string, TierSource> = {
  openai: { factors: { batch: '0.5' }, source: OPENAI_BATCH },
  anthropic: { factors: { batch: '0.5' }, source: 'Anthropic Message Batches API: 50% of the standard prices (docs.anthropic.com/en/docs/build-with-claude/batch-processing)' },
  googleai: { factors: { batch: '0.5' }, source: 'Gemini Batch Mode: 50% of the interactive price (ai.google.dev/gemini-api/docs/batch-mode)' },
};

const flex = (models: string[]) => Object.fromEntries(models.map((m) => [m, { factors: { flex: '0.5' }, source: OPENAI_FLEX }]));
const priority = (factor: string, models: string[]) => Object.fromEntries(models.map((m) => [m, { factors: { priority: factor }, source: OPENAI_PRIORITY }]));

/** Factors of single models ("provider/model"), on top of the provider's. */
const BY_MODEL: Record<string, TierSource[]> = merge([
  prefixed('openai', flex(['gpt-5', 'gpt-5-mini', 'gpt-5-nano', 'gpt-5.1', 'gpt-5.2', 'gpt-5.4', 'gpt-5.4-mini', 'gpt-5.4-nano', 'gpt-5.5', 'o3', 'o4-mini'])),
  // $2.50 / $0.25 / $20 against $1.25 / $0.125 / $10 (gpt-5), and alike.
  prefixed('openai', priority('2', ['gpt-5', 'gpt-5.1', 'gpt-5.2', 'gpt-5.4', 'gpt-5.4-mini', 'gpt-5-codex', 'gpt-5.1-codex', 'gpt-4.1-nano'])),
  // $0.45 / $0.045 / $3.60 against $0.25 / $0.025 / $2.
  prefixed('openai', priority('1.8', ['gpt-5-mini'])),
  // $3.50 / $0.875 / $14 against $2 / $0.50 / $8 (gpt-4.1, o3), $0.70 / $0.175 / $2.80 (gpt-4.1-mini).
  prefixed('openai', priority('1.75', ['gpt-4.1', 'gpt-4.1-mini', 'o3', 'gpt-4o-2024-05-13'])),
  // $4.25 / $2.125 / $17 against $2.50 / $1.25 / $10.
  prefixed('openai', priority('1.7', ['gpt-4o', 'gpt-4o-2024-08-06', 'gpt-4o-2024-11-20'])),
]);

function prefixed(provider: string, byModel: Record<string, TierSource>): Record<string, TierSource> {
  return Object.fromEntries(Object.entries(byModel).map(([m, t]) => [`${provider}/${m}`, t]));
}

function merge(parts: Array<Record<string, TierSource>>): Record<string, TierSource[]> {
  const out: Record<string, TierSource[]> = {};
  for (const part of parts) for (const [k, t] of Object.entries(part)) (out[k] ??= []).push(t);
  return out;
}

/** The curated factors of a model (provider's, then the model's own), or undefined when there are none. */
export function curatedServiceTiers(provider: string, model: string): PriceRates['serviceTiers'] {
  const sources = [BY_PROVIDER[provider], ...(BY_MODEL[`${provider}/${model}`] ?? [])].filter((s): s is TierSource => s !== undefined);
  return sources.length ? Object.assign({}, ...sources.map((s) => s.factors)) : undefined;
}

/** Every curated entry, for review and tests. */
export function curatedServiceTierSources(): Array<{ key: string; tier: TierSource }> {
  return [
    ...Object.entries(BY_PROVIDER).map(([key, tier]) => ({ key, tier })),
    ...Object.entries(BY_MODEL).flatMap(([key, tiers]) => tiers.map((tier) => ({ key, tier }))),
  ];
}
