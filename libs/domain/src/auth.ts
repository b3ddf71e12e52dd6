import { DomainError } from './errors';
import { checkEnum, checkId, checkText, Violations } from './validation';

/** What an API key may do; each RPC needs one scope. */
export type Scope = 'record' | 'read' | 'admin';
export const SCOPE_BY_NUMBER: Record<number, Scope> = { 1: 'record', 2: 'read', 3: 'admin' };

/** An API key of one account, as stored (never its secret). */
export interface ApiKey {
  accountId: string;
  keyId: string;
  name: string;
  scopes: Scope[];
  createTime: Date;
  revokeTime?: Date;
}

/** No valid credentials: missing, malformed, unknown or revoked key. */
export class UnauthenticatedError extends DomainError {
  constructor(message = 'a valid API key is required: send "authorization: Bearer <key>" metadata') {
    super('UNAUTHENTICATED', 'UNAUTHENTICATED', message);
  }
}

/** Valid credentials that do not allow this call. Nothing was read or written. */
export class PermissionDeniedError extends DomainError {
  constructor(reason: 'WRONG_ACCOUNT' | 'MISSING_SCOPE' | 'OPERATOR_ONLY' | 'NO_POLICY', message: string) {
    super('PERMISSION_DENIED', reason, message);
  }
}

/**
 * A key's secret: "mk.<account, base64url>.<key id>.<32 random bytes, base64url>".
 * The account and key id make the lookup a primary-key read (every key of the
 * store leads with account_id); only a hash of the whole secret is stored.
 */
export function formatKeySecret(accountId: string, keyId: string, random: string): string {
  return `mk.${Buffer.from(accountId, 'utf8').toString('base64url')}.${keyId}.${random}`;
}

export function parseKeySecret(secret: string): { accountId: string; keyId: string } | undefined {
  if (secret.length > 512) return undefined;
  const m = /^mk\.([A-Za-z0-9_-]{1,200})\.(k_[0-9a-f]{12})\.([A-Za-z0-9_-]{43})$/.exec(secret);
  if (!m) return undefined;
  const accountId = Buffer.from(m[1], 'base64url').toString('utf8');
  const v = new Violations();
  checkId(v, 'account_id', accountId);
  return v.list.length ? undefined : { accountId, keyId: m[2] };
}

export function validateCreateApiKey(raw: { accountId: string; name: string; scopes: number[] }): { accountId: string; name: string; scopes: Scope[] } {
  const v = new Violations();
  const out = {
    accountId: checkId(v, 'account_id', raw.accountId),
    name: checkText(v, 'name', raw.name, 255, { required: true }),
    scopes: [...new Set((raw.scopes ?? []).map((s) => checkEnum(v, 'scopes', s, SCOPE_BY_NUMBER)).filter((s): s is Scope => s !== undefined))],
  };
  if ((raw.scopes ?? []).length === 0 || (raw.scopes ?? []).includes(0)) v.add('scopes', 'give one or more of RECORD, READ, ADMIN');
  if ((raw.scopes ?? []).length > 3) v.add('scopes', 'at most 3 scopes');
  v.done();
  return out;
}

const KEY_ID = /^k_[0-9a-f]{12}$/;
/** The length of an API key id ("k_" and 12 hex digits). */
export const API_KEY_ID_LENGTH = 14;

export function validateKeyRef(raw: { accountId: string; keyId: string }): { accountId: string; keyId: string } {
  const v = new Violations();
  const out = { accountId: checkId(v, 'account_id', raw.accountId), keyId: raw.keyId };
  if (!KEY_ID.test(raw.keyId)) v.add('key_id', 'must be a key id such as "k_3f9a1c0d2b7e"');
  v.done();
  return out;
}
