import Decimal from 'decimal.js';

/**
 * Exact decimal arithmetic for money. decimal.js defaults to 20 significant
 * digits, which would round large sums of tiny per-token prices; this clone
 * keeps 100 and never switches to exponent notation, so every amount prints as
 * a plain decimal string ("0.00000015", never "1.5e-7").
 */
export const Dec = Decimal.clone({
  precision: 100,
  rounding: Decimal.ROUND_HALF_EVEN,
  toExpNeg: -100,
  toExpPos: 100,
});
export type Dec = InstanceType<typeof Dec>;

/** The currency every price and cost is in. */
export const CURRENCY_CODE = 'USD';

/** A plain decimal string: optional sign, digits, optional fraction; no exponent. */
const DECIMAL_PATTERN = /^-?(0|[1-9]\d*)(\.\d+)?$/;

/** Parses a plain decimal string exactly; returns undefined for anything else (NaN, Infinity, "1e3", " 1"). */
export function parseDecimal(text: string, maxLength = 64): Dec | undefined {
  if (text.length === 0 || text.length > maxLength || !DECIMAL_PATTERN.test(text)) return undefined;
  return new Dec(text);
}

/** The canonical string of an amount: no exponent, no trailing zeros ("0.00225", "3", "-0.5"). */
export function formatDecimal(value: Dec): string {
  const text = value.toFixed();
  return text === '-0' ? '0' : text;
}

/** Sums amounts exactly. */
export function sumDecimals(values: readonly Dec[]): Dec {
  return values.reduce((acc, v) => acc.plus(v), new Dec(0));
}

/** Markup factors are bounded: above 0 (nothing is free by accident) and at most 100x. */
export const MAX_MARKUP = new Dec(100);

/** Parses a markup factor; undefined when it is not a decimal in (0, 100]. */
export function parseMarkup(text: string): Dec | undefined {
  const value = parseDecimal(text, 32);
  if (value === undefined || value.lessThanOrEqualTo(0) || value.greaterThan(MAX_MARKUP)) return undefined;
  return value;
}
