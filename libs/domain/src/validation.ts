import { FieldViolation, ValidationError } from './errors';

/**
 * Collects every violation of a request, so that one INVALID_ARGUMENT names
 * all bad fields. Each check returns the parsed value (or a fallback when the
 * field is bad); `done()` throws when anything was bad.
 */
export class Violations {
  readonly list: FieldViolation[] = [];

  add(field: string, description: string): void {
    this.list.push({ field, description });
  }

  done(): void {
    if (this.list.length > 0) throw new ValidationError(this.list);
  }
}

/** The longest identifier (account, user): ASCII, so as many bytes. */
export const MAX_ID_LENGTH = 128;
/** The longest provider name: ASCII. */
export const MAX_PROVIDER_LENGTH = 64;
/** The longest model name or idempotency key, in UTF-16 code units (up to 3 bytes each in UTF-8). */
export const MAX_KEY_LENGTH = 255;

/** Characters that never belong in an identifier or a stored text: NUL (Postgres rejects it) and other C0/C1 controls. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;
const ID = /^[A-Za-z0-9._:@-]+$/;

export function checkId(v: Violations, field: string, value: string, required = true): string {
  if (value === '') {
    if (required) v.add(field, 'is required');
    return '';
  }
  if (value.length > MAX_ID_LENGTH) v.add(field, `must be at most ${MAX_ID_LENGTH} characters`);
  else if (!ID.test(value)) v.add(field, 'may contain only letters, digits and . _ : @ -');
  return value;
}

export function checkText(v: Violations, field: string, value: string, maxLength: number, opts: { required?: boolean; multiline?: boolean } = {}): string {
  if (value === '') {
    if (opts.required) v.add(field, 'is required');
    return '';
  }
  if (value.length > maxLength) v.add(field, `must be at most ${maxLength} characters`);
  else if (value.includes('\u0000') || (!opts.multiline && /[\r\n\t]/.test(value)) || CONTROL.test(value)) {
    v.add(field, 'must not contain control characters');
  }
  return value;
}

const PROVIDER = new RegExp(`^[a-z0-9][a-z0-9._-]{0,${MAX_PROVIDER_LENGTH - 1}}$`);

export function checkProvider(v: Violations, field: string, value: string, required = true): string {
  if (value === '') {
    if (required) v.add(field, 'is required');
  } else if (!PROVIDER.test(value)) {
    v.add(field, `must be 1 to ${MAX_PROVIDER_LENGTH} characters of a-z 0-9 . _ - (lower case), e.g. "openai"`);
  }
  return value;
}

export function checkModel(v: Violations, field: string, value: string, required = true): string {
  checkText(v, field, value, MAX_KEY_LENGTH, { required });
  if (value !== '' && value.trim() !== value) v.add(field, 'must not start or end with white space');
  return value;
}

/** An int64 that arrived as a decimal string; returns a safe JS integer within [min, max]. */
export function checkInt(v: Violations, field: string, value: string | number | undefined, min: number, max: number): number {
  if (value === undefined || value === '') return 0;
  const text = String(value);
  if (!/^-?\d{1,20}$/.test(text)) {
    v.add(field, 'must be an integer');
    return 0;
  }
  const n = BigInt(text);
  if (n < BigInt(min) || n > BigInt(max)) {
    v.add(field, `must be between ${min} and ${max}, got ${text}`);
    return 0;
  }
  return Number(n);
}

/** Maps an enum that arrived as a number to its domain name. 0 is "unspecified" (undefined). */
export function checkEnum<T extends string>(v: Violations, field: string, value: number, names: Record<number, T>): T | undefined {
  if (value === 0) return undefined;
  const name = names[value];
  if (name === undefined) v.add(field, `unknown value ${value}`);
  return name;
}

/** The earliest and latest moments a request may name (usage, effective and query times). */
export const EARLIEST_TIME = new Date('2000-01-01T00:00:00Z');
export const LATEST_TIME = new Date('9999-12-31T23:59:59Z');

/** A google.protobuf.Timestamp off the wire (int64 seconds as a string). */
export interface TimestampInput {
  seconds: string;
  nanos: number;
}

/** A timestamp within [min, max] at millisecond precision; `fallback` when absent (or bad: the violation is added). */
export function checkTimestamp(v: Violations, field: string, value: TimestampInput | undefined, fallback: Date, min = EARLIEST_TIME, max = LATEST_TIME): Date {
  if (value === undefined) return fallback;
  const seconds = String(value.seconds ?? '0');
  const nanos = value.nanos ?? 0;
  if (!/^-?\d{1,20}$/.test(seconds) || !Number.isInteger(nanos) || nanos < 0 || nanos > 999_999_999) {
    v.add(field, 'must be a valid timestamp');
    return fallback;
  }
  const ms = BigInt(seconds) * 1000n + BigInt(Math.floor(nanos / 1_000_000));
  if (ms < BigInt(min.getTime()) || ms > BigInt(max.getTime())) {
    v.add(field, `must be between ${min.toISOString()} and ${max.toISOString()}`);
    return fallback;
  }
  return new Date(Number(ms));
}

/** Who makes a configuration change (recorded in the audit trail). */
export function checkActor(v: Violations, value: string | undefined): string {
  return checkText(v, 'actor', value ?? '', 255);
}
