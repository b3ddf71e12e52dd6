import { Provider, waitForUpdate } from '@pydantic/genai-prices';
import { CATALOGUE, CatalogueFile, catalogueRows, CURATED, CURATED_PROVIDERS, CuratedModel, PriceTable } from '@metering/pricing';
import { describeUpstream, generate, GenerateInput } from './ledger';
import { exactDecimal, readUpstream } from './upstream';

/**
 * The generator on the real pinned upstream data: regeneration never rewrites
 * a row (a changed upstream price is a new dated row, a dropped model is
 * retired and keeps its past), a curated entry that no longer matches what it
 * was reviewed against fails, float artefacts are refused, and upstream's
 * loose match rules become explicit ids only.
 */

let data: Provider[];
beforeAll(async () => {
  data = (await waitForUpdate()) ?? [];
});

const VERSION = '0.1.8';
const input = (over: Partial<GenerateInput>): GenerateInput => ({
  upstream: readUpstream(data),
  upstreamVersion: VERSION,
  curated: CURATED,
  curatedProviders: CURATED_PROVIDERS,
  day: '2026-12-01',
  ...over,
});
/** The upstream data with one model's undated price changed (a deep copy; the package's data is untouched). */
function withPrice(provider: string, model: string, prices: Record<string, number>): Provider[] {
  const copy = structuredClone(data) as Provider[];
  const m = copy.find((p) => p.id === provider)?.models.find((x) => x.id === model);
  if (!m) throw new Error(`no ${provider}/${model} upstream`);
  m.prices = prices;
  return copy;
}
const rowsOf = (file: CatalogueFile, provider: string, model: string) => file.models.find((m) => m.provider === provider && m.model === model);

describe('the committed catalogue', () => {
  it('is what the pinned upstream version and the curated layer generate (regenerating changes nothing)', () => {
    const { file, report } = generate(input({ previous: CATALOGUE, day: '2026-12-09' }));
    expect(file).toEqual(CATALOGUE);
    expect(report.changed).toEqual([]);
    expect(report.unreviewed).toEqual([]);
    expect(report.errors).toEqual([]);
  });
});

describe('regeneration', () => {
  it('appends a dated row when upstream changes a price, keeps the old row, and charges priced before keep their version', () => {
    const before = generate(input({ day: '2026-12-01' })).file;
    const old = new PriceTable(catalogueRows(before), before.providers).priceAt('openai', 'gpt-5.4', new Date('2026-12-05T10:00:00Z'));
    expect(old?.version).toBe('genai-prices@0.1.8:openai/gpt-5.4@2026-12-01');

    const changed = withPrice('openai', 'gpt-5.4', { input_mtok: 2, cache_read_mtok: 0.2, output_mtok: 12 });
    const { file, report } = generate(input({ previous: before, upstream: readUpstream(changed), upstreamVersion: '0.1.9', day: '2026-12-10' }));
    const rows = rowsOf(file, 'openai', 'gpt-5.4')?.rows ?? [];
    expect(rows.map((r) => [r.effectiveFrom, r.version, r.rates.input])).toEqual([
      ['2026-12-01', 'genai-prices@0.1.8:openai/gpt-5.4@2026-12-01', '2.5'],
      ['2026-12-10', 'genai-prices@0.1.9:openai/gpt-5.4@2026-12-10', '2'],
    ]);
    expect(report.changed).toEqual([expect.objectContaining({ model: 'openai/gpt-5.4', effectiveFrom: '2026-12-10', after: 'input 2, output 12, cachedInput 0.2, serviceTiers {batch 0.5, flex 0.5, priority 2}' })]);
    const table = new PriceTable(catalogueRows(file), file.providers);
    // A charge of 2026-12-05 is priced (and re-rated) with the old row; one of 2026-12-11 with the new.
    expect(table.priceAt('openai', 'gpt-5.4', new Date('2026-12-05T10:00:00Z'))?.version).toBe(old?.version);
    expect(table.priceAt('openai', 'gpt-5.4', new Date('2026-12-11T10:00:00Z'))?.version).toBe('genai-prices@0.1.9:openai/gpt-5.4@2026-12-10');
    // Unchanged models keep their rows and versions.
    expect(rowsOf(file, 'openai', 'gpt-5.1')).toEqual(rowsOf(before, 'openai', 'gpt-5.1'));
  });

  it('takes upstream\'s start date for a dated change', () => {
    const before = generate(input({ day: '2026-12-01' })).file;
    const changed = structuredClone(data) as Provider[];
    const m = changed.find((p) => p.id === 'openai')?.models.find((x) => x.id === 'gpt-5.1');
    if (!m || Array.isArray(m.prices)) throw new Error('gpt-5.1 has conditional prices upstream');
    m.prices = [{ prices: m.prices }, { constraint: { type: 'start_date', start_date: '2026-12-07' }, prices: { input_mtok: 1, output_mtok: 8 } }];
    const { file } = generate(input({ previous: before, upstream: readUpstream(changed), day: '2026-12-10' }));
    expect(rowsOf(file, 'openai', 'gpt-5.1')?.rows.map((r) => r.effectiveFrom)).toEqual(['2026-12-01', '2026-12-07']);
  });

  it('keeps a model upstream dropped, priced for its past only, and marks it retired', () => {
    const before = generate(input({ day: '2026-12-01' })).file;
    const dropped = structuredClone(data) as Provider[];
    const openai = dropped.find((p) => p.id === 'openai');
    if (!openai) throw new Error('no openai upstream');
    openai.models = openai.models.filter((m) => m.id !== 'gpt-5.1');
    const { file, report } = generate(input({ previous: before, upstream: readUpstream(dropped), day: '2026-12-10' }));
    expect(report.retired).toEqual(['openai/gpt-5.1']);
    const model = rowsOf(file, 'openai', 'gpt-5.1');
    expect(model?.retired).toBe('2026-12-10');
    expect(model?.rows).toEqual(rowsOf(before, 'openai', 'gpt-5.1')?.rows);
    const table = new PriceTable(catalogueRows(file), file.providers);
    expect(table.priceAt('openai', 'gpt-5.1', new Date('2026-12-09T10:00:00Z'))?.version).toBe('genai-prices@0.1.8:openai/gpt-5.1@2026-12-01');
    expect(table.priceAt('openai', 'gpt-5.1', new Date('2026-12-10T10:00:00Z'))).toBeUndefined();
    // Regenerating again keeps the retirement day.
    expect(rowsOf(generate(input({ previous: file, upstream: readUpstream(dropped), day: '2026-12-20' })).file, 'openai', 'gpt-5.1')?.retired).toBe('2026-12-10');
  });
});

describe('the curated layer', () => {
  it('fails an entry whose reviewed upstream price is no longer upstream\'s, and prints the disagreement', () => {
    const changed = withPrice('x-ai', 'grok-4-0709', { input_mtok: 2, cache_read_mtok: 0.5, output_mtok: 10 });
    const { report } = generate(input({ upstream: readUpstream(changed) }));
    expect(report.unreviewed).toEqual([expect.stringContaining('xai/grok-4: reviewed against "input 3, output 15, cachedInput 0.75", upstream now "input 2, output 10, cachedInput 0.5"')]);
    expect(report.disagreements.find((d) => d.model === 'xai/grok-4')).toMatchObject({ upstream: 'input 2, output 10, cachedInput 0.5' });
  });

  it('fails an entry without a review, and one for a model upstream starts to list', () => {
    const entry = CURATED.find((c) => c.model === 'gemini-1.5-flash-8b');
    if (!entry) throw new Error('no curated gemini-1.5-flash-8b');
    const unreviewed: CuratedModel = { ...entry, reviewed: undefined };
    const { report } = generate(input({ curated: [...CURATED.filter((c) => c !== entry), unreviewed] }));
    expect(report.unreviewed).toEqual([expect.stringContaining('googleai/gemini-1.5-flash-8b')]);
    const listed = structuredClone(data) as Provider[];
    listed.find((p) => p.id === 'openai')?.models.push({ id: 'davinci-002', match: { equals: 'davinci-002' }, prices: { input_mtok: 2, output_mtok: 2 } });
    expect(generate(input({ upstream: readUpstream(listed) })).report.unreviewed).toEqual([
      'openai/davinci-002: reviewed against "absent", upstream now "input 2, output 2"',
    ]);
  });

  it('is reviewed against upstream as it is', () => {
    const u = readUpstream(data);
    const grok = u.models.find((m) => m.provider === 'xai' && m.upstreamModel === 'grok-4-0709');
    expect(CURATED.find((c) => c.model === 'grok-4')?.reviewed).toBe(describeUpstream(grok));
  });
});

describe('reading upstream', () => {
  it('converts numbers to exact decimals and refuses float artefacts', () => {
    expect(exactDecimal(0.075)).toBe('0.075');
    expect(exactDecimal(2.5)).toBe('2.5');
    expect(exactDecimal(0.0000375)).toBe('0.0000375');
    expect(exactDecimal(0.08333333333333334)).toBeUndefined();
    expect(exactDecimal(0.1 + 0.2)).toBeUndefined();
    expect(exactDecimal(-1)).toBeUndefined();
    expect(exactDecimal(Number.NaN)).toBeUndefined();
    const read = readUpstream(data);
    expect(read.artefacts).toContain('openrouter/google/gemini-3-flash-preview cache_write_mtok=0.08333333333333334');
    expect(read.models.some((m) => m.provider === 'openrouter' && m.upstreamModel === 'google/gemini-3-flash-preview')).toBe(false);
  });

  it('turns match rules into explicit ids that resolve as upstream resolves them, and nothing looser', () => {
    const table = new PriceTable();
    // gemini-1.5-flash's rule is `contains: gemini-1.5-flash`: the 8B model is ours, not a substring match.
    expect(table.priceAt('googleai', 'gemini-1.5-flash-8b', new Date('2026-12-01T12:00:00Z'))?.version).toBe('googleai/gemini-1.5-flash-8b@2024-10-03');
    // Bedrock: the regional and cross-region inference profile ids upstream's rules name.
    for (const id of ['us.anthropic.claude-opus-4-6-v1:0', 'eu.anthropic.claude-opus-4-6-v1:0', 'anthropic.claude-opus-4-6-v1:0']) {
      expect([id, table.priceAt('aws', id, new Date('2026-12-01T12:00:00Z'))?.model]).toEqual([id, 'regional.anthropic.claude-opus-4-6-v1:0']);
    }
    expect(table.priceAt('aws', 'global.anthropic.claude-opus-4-6-v1:0', new Date('2026-12-01T12:00:00Z'))?.model).toBe('global.anthropic.claude-opus-4-6-v1:0');
    // Near misses are unpriced: a longer id, a prefix, another spelling.
    for (const id of ['gpt-5.4-turbo-x', 'gpt-5.', 'gpt5.4', 'anthropic.claude-opus-4-6-v9']) {
      expect([id, table.priceAt(id.startsWith('anthropic') ? 'aws' : 'openai', id, new Date('2026-12-01T12:00:00Z'))]).toEqual([id, undefined]);
    }
  });
});
