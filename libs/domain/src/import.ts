import { CURRENCY_CODE, Dec, formatDecimal, parseDecimal, parseMarkup } from '@metering/pricing';
import { ChargeCosts, ChargeInput, RecordChargeRequestInput, validateRecordCharge } from './charge';
import { ValidationError } from './errors';
import { checkText, Violations } from './validation';

/**
 * ImportCharges (the migration from the Django models this service replaces):
 * a charge as RecordCharge takes it, and optionally the cost it already had
 * there, kept instead of pricing it again. A kept cost makes the charge
 * priced with price origin 'imported'; it moves rollups, counters, credits
 * and alerts as any priced charge does (the same write path), and re-rating
 * leaves it alone (the cost is history the source system billed).
 */

/** The largest kept amount (USD). */
export const MAX_KEPT_AMOUNT = new Dec('1e9');
/** The most fractional digits of a kept amount (Django's DecimalField has 6; 18 leaves room). */
export const MAX_KEPT_DECIMALS = 18;
/** price_version of a kept cost without a source. */
export const DEFAULT_KEPT_SOURCE = 'imported';

interface MoneyInput {
  amount: string;
  currencyCode: string;
}

/** A KeptCost as it comes off the wire. */
export interface KeptCostInput {
  promptCost?: MoneyInput;
  completionCost?: MoneyInput;
  callCost?: MoneyInput;
  totalCost?: MoneyInput;
  providerCost?: MoneyInput;
  markup: string;
  source: string;
}

/** An ImportedCharge as it comes off the wire. */
export interface ImportedChargeInput {
  charge?: RecordChargeRequestInput;
  keptCost?: KeptCostInput;
}

/** A kept cost, validated: what the charge is stored with instead of a price. */
export interface KeptPricing {
  pricingStatus: 'priced';
  priceVersion: string;
  markup: string;
  priceOrigin: 'imported';
  costs: ChargeCosts;
}

/** A validated charge to import, with its kept cost or none (priced as RecordCharge prices). */
export interface ImportInput {
  input: ChargeInput;
  kept: KeptPricing | null;
}

function checkKeptAmount(v: Violations, field: string, money: MoneyInput | undefined, required: boolean): Dec | undefined {
  if (money === undefined) {
    if (required) v.add(field, 'is required');
    return undefined;
  }
  if (money.currencyCode !== CURRENCY_CODE) v.add(`${field}.currency_code`, `must be "${CURRENCY_CODE}"`);
  const amount = parseDecimal(money.amount ?? '', 40);
  if (amount === undefined) {
    v.add(`${field}.amount`, 'must be a plain decimal string such as "0.000125"');
    return undefined;
  }
  if (amount.isNegative() || amount.greaterThan(MAX_KEPT_AMOUNT) || amount.decimalPlaces() > MAX_KEPT_DECIMALS) {
    v.add(`${field}.amount`, `must be between 0 and ${formatDecimal(MAX_KEPT_AMOUNT)} with at most ${MAX_KEPT_DECIMALS} fractional digits`);
    return undefined;
  }
  return amount;
}

/** Validates a kept cost; fields are named under `kept_cost.` (throws ValidationError naming every bad one). */
export function validateKeptCost(raw: KeptCostInput): KeptPricing {
  const v = new Violations();
  const f = (name: string) => `kept_cost.${name}`;
  const prompt = checkKeptAmount(v, f('prompt_cost'), raw.promptCost, true);
  const completion = checkKeptAmount(v, f('completion_cost'), raw.completionCost, true);
  const call = checkKeptAmount(v, f('call_cost'), raw.callCost, false) ?? new Dec(0);
  const total = checkKeptAmount(v, f('total_cost'), raw.totalCost, false);
  const provider = checkKeptAmount(v, f('provider_cost'), raw.providerCost, false);
  const markup = raw.markup ? parseMarkup(raw.markup) : new Dec(1);
  if (markup === undefined) v.add(f('markup'), 'must be a decimal string greater than 0 and at most 100, e.g. "1.25", or empty for 1');
  const source = checkText(v, f('source'), raw.source ?? '', 255) || DEFAULT_KEPT_SOURCE;
  const sum = prompt && completion ? prompt.plus(completion).plus(call) : undefined;
  if (sum && total && !total.equals(sum)) v.add(f('total_cost'), `must equal prompt_cost + completion_cost + call_cost (${formatDecimal(sum)})`);
  if (!provider && markup && !markup.equals(1)) v.add(f('provider_cost'), 'is required when markup is not 1');
  v.done();
  const billed = sum as Dec;
  return {
    pricingStatus: 'priced',
    priceVersion: source,
    markup: formatDecimal(markup as Dec),
    priceOrigin: 'imported',
    costs: {
      providerCost: formatDecimal(provider ?? billed),
      promptCost: formatDecimal(prompt as Dec),
      completionCost: formatDecimal(completion as Dec),
      callCost: formatDecimal(call),
      totalCost: formatDecimal(billed),
    },
  };
}

/**
 * Validates one charge to import: the charge as RecordCharge validates it
 * (its fields named under `charge.`), a usage_time required (an import
 * records past usage, never "now"), no reservation, and the kept cost.
 */
export function validateImportedCharge(raw: ImportedChargeInput, now: Date): ImportInput {
  const violations: Array<{ field: string; description: string }> = [];
  let input: ChargeInput | undefined;
  let kept: KeptPricing | null = null;
  if (!raw.charge) violations.push({ field: 'charge', description: 'is required' });
  else {
    if (raw.charge.usageTime === undefined) violations.push({ field: 'charge.usage_time', description: 'is required: an import records past usage' });
    if (raw.charge.reservationId) violations.push({ field: 'charge.reservation_id', description: 'must be empty: an imported charge settles no reservation' });
    try {
      input = validateRecordCharge(raw.charge, now);
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      violations.push(...err.violations.map((x) => ({ field: `charge.${x.field}`, description: x.description })));
    }
  }
  if (raw.keptCost) {
    try {
      kept = validateKeptCost(raw.keptCost);
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      violations.push(...err.violations);
    }
  }
  if (violations.length > 0) throw new ValidationError(violations);
  return { input: input as ChargeInput, kept };
}
