import { MeteringServiceService, meteringServiceDesc, protoJson } from '@metering/contracts';
import { stringify } from 'csv-stringify/sync';
import Decimal from 'decimal.js';

/** How a listing is printed: a table for people, or JSON / CSV for scripts. */
export interface ListingFormat {
  json?: boolean;
  csv?: boolean;
}

export const out = (text: string): void => {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
};

type Method = keyof typeof MeteringServiceService;

/**
 * A response as protobuf JSON (what `buf curl` prints): enum names, RFC 3339 times, int64 as
 * strings, and every field present, so `false` and `0` are kept.
 */
export function responseJson<M extends Method>(method: M, response: Parameters<(typeof MeteringServiceService)[M]['responseSerialize']>[0]): unknown {
  const serialize = MeteringServiceService[method].responseSerialize as (value: typeof response) => Buffer;
  return protoJson(meteringServiceDesc.method[method].output.typeName, serialize(response));
}

export const printJson = (value: unknown): void => out(JSON.stringify(value, null, 2));

/** A table: the columns named in `right` are right-aligned (numbers). */
export function table(header: string[], rows: string[][], right: string[] = []): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const alignRight = header.map((h) => right.includes(h));
  const line = (cells: string[]) => cells.map((c, i) => (alignRight[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** CSV with a header row (RFC 4180 quoting). */
export const csv = (header: string[], rows: Array<Array<string | number>>): string => stringify([header, ...rows]);

/** The terminal's width: its columns on a TTY, else COLUMNS when set, else 0 (not a terminal). */
export function terminalWidth(): number {
  if (process.stdout.isTTY) return process.stdout.columns ?? 0;
  const env = Number(process.env.COLUMNS);
  return Number.isFinite(env) ? env : 0;
}

const EIGHTHS = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

/**
 * A horizontal bar chart, one labelled bar per row, scaled to the largest value and `width`
 * columns (eighth blocks for the remainder). Values are exact decimals; only the bar lengths
 * are rounded.
 */
export function barChart(rows: Array<{ label: string; value: Decimal; note: string }>, width: number): string {
  const max = Decimal.max(...rows.map((r) => r.value), 0);
  const labelWidth = Math.max(...rows.map((r) => r.label.length));
  return rows
    .map((r) => {
      const eighths = max.isZero() ? 0 : r.value.div(max).mul(width * 8).round().toNumber();
      const bar = '█'.repeat(Math.floor(eighths / 8)) + EIGHTHS[eighths % 8];
      return `${r.label.padEnd(labelWidth)}  ${bar.padEnd(width)}  ${r.note}`.trimEnd();
    })
    .join('\n');
}
