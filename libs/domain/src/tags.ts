import { Violations } from './validation';

/**
 * Tags on charges and reservations (issue 20): a small map of the caller's
 * labels, e.g. {"feature": "summarize", "env": "prod"}. Every tag is kept on
 * the charge; the keys an account declares as dimensions are also summed in
 * its rollups.
 */
export type Tags = Record<string, string>;

/** At most this many tags on one charge or reservation. */
export const MAX_TAGS = 10;
/** The longest tag key. */
export const MAX_TAG_KEY_LENGTH = 64;
/** The longest tag value, in UTF-16 code units. */
export const MAX_TAG_VALUE_LENGTH = 128;

const TAG_KEY = new RegExp(`^[a-z][a-z0-9_.-]{0,${MAX_TAG_KEY_LENGTH - 1}}$`);
/** Any control character (C0, DEL, C1), tab and line breaks included, and the Unicode line and paragraph separators. */
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

/** Whether a string is a valid tag key (1 to 64 of a-z 0-9 _ . -, starting with a letter). */
export const isTagKey = (key: string): boolean => TAG_KEY.test(key);

/** The problem of a tag key, or undefined. */
export function tagKeyProblem(key: string): string | undefined {
  return isTagKey(key) ? undefined : `tag keys are 1 to ${MAX_TAG_KEY_LENGTH} characters of lower case letters, digits and _ . -, starting with a letter`;
}

/** The problem of a tag value, or undefined. */
export function tagValueProblem(value: string): string | undefined {
  if (value === '') return 'must not be empty (leave the tag out instead)';
  if (value.length > MAX_TAG_VALUE_LENGTH) return `must be at most ${MAX_TAG_VALUE_LENGTH} characters`;
  if (CONTROL.test(value)) return 'must not contain control characters';
  if (value.trim() !== value) return 'must not start or end with white space';
  return undefined;
}

/** A short, printable rendering of a bad key for a message (never echoes control characters or a long key). */
const shown = (key: string) => JSON.stringify(key.slice(0, 40).replace(new RegExp(CONTROL.source, 'g'), '?'));

/**
 * Validates a tag map off the wire (`field` is its proto name, "tags"): at
 * most MAX_TAGS keys, each key and value bounded and printable. A bad key is
 * named in the description of `field`; a bad value is `field[key]`. Returns
 * the tags with their keys in order (so equal maps compare and hash alike).
 */
export function checkTags(v: Violations, field: string, raw: Record<string, string> | undefined): Tags {
  const entries = Object.entries(raw ?? {});
  if (entries.length > MAX_TAGS) {
    v.add(field, `at most ${MAX_TAGS} tags, got ${entries.length}`);
    return {};
  }
  const tags: Tags = {};
  for (const [key, value] of entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const keyProblem = tagKeyProblem(key);
    if (keyProblem) {
      v.add(field, `${keyProblem}, got ${shown(key)}`);
      continue;
    }
    const valueProblem = tagValueProblem(typeof value === 'string' ? value : '');
    if (valueProblem) v.add(`${field}[${key}]`, valueProblem);
    else tags[key] = value;
  }
  return tags;
}

/** Two tag maps hold the same tags. */
export function sameTags(a: Tags, b: Tags): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => b[k] === a[k]);
}
