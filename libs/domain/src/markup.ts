import { Dec, MAX_MARKUP, parseMarkup } from '@metering/pricing';
import { ChargeType, CHARGE_TYPE_BY_NUMBER } from './charge';
import { checkActor, checkEnum, checkId, checkModel, checkProvider, Violations } from './validation';

/**
 * A markup factor (the Django models' LLMPrices) for one charge type, provider and
 * model: the default of every account (accountId '') or one account's
 * override. Precedence: the account's own, else the default, else 1.
 */
export interface Markup {
  accountId: string;
  chargeType: ChargeType;
  provider: string;
  model: string;
  factor: Dec;
  updateTime?: Date;
  updatedBy: string;
}

export interface MarkupKeyInput {
  accountId: string;
  chargeType: number;
  provider: string;
  model: string;
  actor?: string;
}

export type MarkupKey = Pick<Markup, 'accountId' | 'chargeType' | 'provider' | 'model'>;

function checkKey(v: Violations, raw: MarkupKeyInput): MarkupKey {
  const chargeType = checkEnum(v, 'charge_type', raw.chargeType, CHARGE_TYPE_BY_NUMBER);
  if (raw.chargeType === 0) v.add('charge_type', 'is required');
  return {
    accountId: checkId(v, 'account_id', raw.accountId ?? '', false),
    chargeType: chargeType ?? 'completion',
    provider: checkProvider(v, 'provider', raw.provider),
    model: checkModel(v, 'model', raw.model),
  };
}

/** A markup to remove, and who removes it. */
export function validateMarkupKey(raw: MarkupKeyInput): { key: MarkupKey; actor: string } {
  const v = new Violations();
  const key = checkKey(v, raw);
  const actor = checkActor(v, raw.actor);
  v.done();
  return { key, actor };
}

export function validateSetMarkup(raw: MarkupKeyInput & { factor: string }): Markup {
  const v = new Violations();
  const key = checkKey(v, raw);
  const updatedBy = checkActor(v, raw.actor);
  const factor = parseMarkup(raw.factor);
  if (factor === undefined) v.add('factor', `must be a decimal string greater than 0 and at most ${MAX_MARKUP.toFixed()}, e.g. "1.25"`);
  v.done();
  return { ...key, factor: factor as Dec, updatedBy };
}

/** ListMarkups: the defaults (accountId '') or one account's overrides, optionally of one provider. */
export function validateListMarkups(raw: { provider: string; accountId: string }): { provider?: string; accountId: string } {
  const v = new Violations();
  const provider = checkProvider(v, 'provider', raw.provider, false);
  const accountId = checkId(v, 'account_id', raw.accountId ?? '', false);
  v.done();
  return { provider: provider || undefined, accountId };
}
