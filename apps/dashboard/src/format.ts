import Decimal from 'decimal.js';

/**
 * Exact decimals for display: amounts arrive as decimal strings and are summed with decimal.js,
 * never as floats; only chart geometry uses numbers.
 */
export const dec = (value: string | undefined) => new Decimal(value || '0');

export const sum = (values: Array<string | Decimal>) => values.reduce<Decimal>((acc, v) => acc.plus(v), new Decimal(0));

/** An exact decimal with thousands separators: 12345.00675 -> "12,345.00675". */
export function formatDecimal(value: Decimal | string): string {
  const text = (typeof value === 'string' ? new Decimal(value) : value).toFixed();
  const [whole, fraction] = text.split('.');
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return fraction ? `${grouped}.${fraction}` : grouped;
}

export const formatUsd = (value: Decimal | string) => `$${formatDecimal(value)}`;

/** A share of a total, to one decimal of a percent. */
export const share = (part: Decimal, total: Decimal) => (total.isZero() ? '0.0%' : `${part.div(total).times(100).toFixed(1)}%`);

export const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
