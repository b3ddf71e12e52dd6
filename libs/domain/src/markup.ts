import { Dec, MAX_MARKUP, parseMarkup } from '@metering/pricing';
import { ChargeType, CHARGE_TYPE_BY_NUMBER } from './charge';
import { checkEnum, checkModel, checkProvider, Violations } from './validation';

/** A markup factor (the seeds' LLMPrices) for one charge type, provider and model. */
export interface Markup {
  chargeType: ChargeType;
  provider: string;
  model: string;
  factor: Dec;
  updateTime?: Date;
}

export interface MarkupKeyInput {
  chargeType: number;
  provider: string;
  model: string;
}

export type MarkupKey = Pick<Markup, 'chargeType' | 'provider' | 'model'>;

function checkKey(v: Violations, raw: MarkupKeyInput): MarkupKey {
  const chargeType = checkEnum(v, 'charge_type', raw.chargeType, CHARGE_TYPE_BY_NUMBER);
  if (raw.chargeType === 0) v.add('charge_type', 'is required');
  return { chargeType: chargeType ?? 'completion', provider: checkProvider(v, 'provider', raw.provider), model: checkModel(v, 'model', raw.model) };
}

export function validateMarkupKey(raw: MarkupKeyInput): MarkupKey {
  const v = new Violations();
  const key = checkKey(v, raw);
  v.done();
  return key;
}

export function validateSetMarkup(raw: MarkupKeyInput & { factor: string }): Markup {
  const v = new Violations();
  const key = checkKey(v, raw);
  const factor = parseMarkup(raw.factor);
  if (factor === undefined) v.add('factor', `must be a decimal string greater than 0 and at most ${MAX_MARKUP.toFixed()}, e.g. "1.25"`);
  v.done();
  return { ...key, factor: factor as Dec };
}

export function validateProviderFilter(provider: string): string | undefined {
  const v = new Violations();
  checkProvider(v, 'provider', provider, false);
  v.done();
  return provider || undefined;
}
