import { Violations } from './validation';

/**
 * Page tokens, for every List RPC: base64url of `{ f: the query's filters, k: the last row's key }`.
 * A token is opaque to clients and bound to the query it came from: read with other filters,
 * changed, or longer than any token we make, it is refused as `page_token`, never followed.
 */
const MAX_TOKEN_LENGTH = 2048;
const REFUSED = 'is not a token returned by a previous page of this same query';

/** The token of the page after the row with key `key`, for a query with these filters. */
export function encodePageToken(filters: unknown, key: unknown): string {
  return Buffer.from(JSON.stringify({ f: filters, k: key }), 'utf8').toString('base64url');
}

/**
 * The key in `token` (undefined for the first page, `''`), when it was made for these same
 * filters and `parseKey` accepts it; otherwise a `page_token` violation and undefined.
 */
export function decodePageToken<K>(v: Violations, token: string, filters: unknown, parseKey: (key: unknown) => K | undefined): K | undefined {
  if (token === '') return undefined;
  try {
    if (token.length <= MAX_TOKEN_LENGTH) {
      const body = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { f?: unknown; k?: unknown } | null;
      if (body && JSON.stringify(body.f) === JSON.stringify(filters)) {
        const key = parseKey(body.k);
        if (key !== undefined) return key;
      }
    }
  } catch {
    // not JSON: refused below
  }
  v.add('page_token', REFUSED);
  return undefined;
}

/** `key` as an array of `length` strings, or undefined. */
export function stringTuple(key: unknown, length: number): string[] | undefined {
  return Array.isArray(key) && key.length === length && key.every((x) => typeof x === 'string') ? (key as string[]) : undefined;
}
