import type { Metadata } from '@grpc/grpc-js';
import { parseKeySecret, PermissionDeniedError, Scope, UnauthenticatedError } from '@metering/domain';
import { timingSafeEqual } from 'node:crypto';
import { ApiKeysService, hashSecret } from '../services/api-keys.service';

/**
 * Who calls: the operator (the deployment's own key, or anyone when
 * authentication is off for development), or an API key of one account with
 * its scopes.
 */
export interface Principal {
  operator: boolean;
  accountId: string;
  /** The API key's id (e.g. "k_3f9a1c0d2b7e"); '' for the operator (and with authentication off). */
  keyId: string;
  scopes: ReadonlySet<Scope>;
}

/** What a handler may know of who calls: the API key's id, recorded on charges and reservations. */
export type Caller = Pick<Principal, 'keyId'>;

const OPERATOR: Principal = { operator: true, accountId: '', keyId: '', scopes: new Set(['record', 'read', 'admin']) };

export type AuthMode = 'keys' | 'off';

const sameHash = (a: string, b: string) => a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));

/**
 * Authenticates a call from its `authorization: Bearer <key>` metadata. Key
 * lookups are cached for `cacheMs` (a revocation on this process applies at
 * once, on other processes within cacheMs).
 */
export class Authenticator {
  private readonly cache = new Map<string, { until: number; key: Awaited<ReturnType<ApiKeysService['find']>> }>();
  private readonly operatorHash?: string;

  constructor(
    private readonly keys: ApiKeysService,
    readonly mode: AuthMode,
    operatorKey?: string,
    private readonly cacheMs = 1000,
  ) {
    this.operatorHash = operatorKey ? hashSecret(operatorKey) : undefined;
  }

  async authenticate(metadata: Metadata): Promise<Principal> {
    if (this.mode === 'off') return OPERATOR;
    const header = metadata.get('authorization')[0];
    const token = typeof header === 'string' ? /^Bearer (\S+)$/i.exec(header)?.[1] : undefined;
    if (!token) throw new UnauthenticatedError();
    const hash = hashSecret(token);
    if (this.operatorHash && sameHash(hash, this.operatorHash)) return OPERATOR;
    const ref = parseKeySecret(token);
    if (!ref) throw new UnauthenticatedError('the API key is malformed');
    const id = `${ref.accountId}\u0000${ref.keyId}`;
    let entry = this.cache.get(id);
    if (!entry || entry.until < Date.now()) {
      entry = { until: Date.now() + this.cacheMs, key: await this.keys.find(ref.accountId, ref.keyId) };
      this.cache.set(id, entry);
    }
    const key = entry.key;
    if (!key || !sameHash(hash, key.secretHash)) throw new UnauthenticatedError('unknown API key');
    if (key.revokeTime) throw new UnauthenticatedError('the API key was revoked');
    return { operator: false, accountId: key.accountId, keyId: ref.keyId, scopes: new Set(key.scopes) };
  }

  forget(accountId: string, keyId: string): void {
    this.cache.delete(`${accountId}\u0000${keyId}`);
  }
}

/**
 * How each RPC's account is taken from its request: 'own' means account_id
 * is the account acted on (empty = the key's own account); 'shared' means an
 * empty account_id names the defaults of every account (prices, markups),
 * which any key may read and only the operator may change; 'operator' means
 * the RPC spans accounts (ListAccounts) or states what the service otherwise
 * decides (ImportCharges: kept costs): only the operator key may call it.
 */
type AccountRule = 'own' | 'shared' | 'operator';

interface Rule {
  scope: Scope;
  account: AccountRule;
}

/** The scope and account rule of every RPC. An RPC missing here is refused (fail closed). */
export const POLICY: Readonly<Record<string, Rule>> = {
  RecordCharge: { scope: 'record', account: 'own' },
  RecordCharges: { scope: 'record', account: 'own' },
  // Imports charges of any account, with costs the caller states: the operator only.
  ImportCharges: { scope: 'admin', account: 'operator' },
  CheckLimits: { scope: 'record', account: 'own' },
  ReleaseReservation: { scope: 'record', account: 'own' },
  GetReservation: { scope: 'read', account: 'own' },
  WatchCharges: { scope: 'read', account: 'own' },
  GetDailyUsage: { scope: 'read', account: 'own' },
  GetCharge: { scope: 'read', account: 'own' },
  ListCharges: { scope: 'read', account: 'own' },
  ExportCharges: { scope: 'read', account: 'own' },
  GetLimits: { scope: 'read', account: 'own' },
  ListLimits: { scope: 'read', account: 'own' },
  GetAccount: { scope: 'read', account: 'own' },
  ListMarkups: { scope: 'read', account: 'shared' },
  ListPricingChanges: { scope: 'read', account: 'shared' },
  ListModels: { scope: 'read', account: 'shared' },
  GetPrice: { scope: 'read', account: 'shared' },
  EstimateCost: { scope: 'read', account: 'shared' },
  SetLimits: { scope: 'admin', account: 'own' },
  PutLimit: { scope: 'admin', account: 'own' },
  DeleteLimit: { scope: 'admin', account: 'own' },
  SetAccount: { scope: 'admin', account: 'own' },
  RerateCharges: { scope: 'admin', account: 'own' },
  SetMarkup: { scope: 'admin', account: 'shared' },
  DeleteMarkup: { scope: 'admin', account: 'shared' },
  SetPrice: { scope: 'admin', account: 'shared' },
  DeletePrice: { scope: 'admin', account: 'shared' },
  CreateApiKey: { scope: 'admin', account: 'own' },
  RevokeApiKey: { scope: 'admin', account: 'own' },
  ListApiKeys: { scope: 'admin', account: 'own' },
  ListReservations: { scope: 'read', account: 'own' },
  ListAccounts: { scope: 'admin', account: 'operator' },
  GetBalance: { scope: 'read', account: 'own' },
  ListGrants: { scope: 'read', account: 'own' },
  ListBalanceEntries: { scope: 'read', account: 'own' },
  CreateGrant: { scope: 'admin', account: 'own' },
  VoidGrant: { scope: 'admin', account: 'own' },
  SetCreditPolicy: { scope: 'admin', account: 'own' },
  GetAlertRule: { scope: 'read', account: 'own' },
  ListAlertRules: { scope: 'read', account: 'own' },
  CreateAlertRule: { scope: 'admin', account: 'own' },
  UpdateAlertRule: { scope: 'admin', account: 'own' },
  DeleteAlertRule: { scope: 'admin', account: 'own' },
  GetWebhookEndpoint: { scope: 'admin', account: 'own' },
  ListWebhookEndpoints: { scope: 'admin', account: 'own' },
  CreateWebhookEndpoint: { scope: 'admin', account: 'own' },
  UpdateWebhookEndpoint: { scope: 'admin', account: 'own' },
  DeleteWebhookEndpoint: { scope: 'admin', account: 'own' },
  RotateWebhookSecret: { scope: 'admin', account: 'own' },
  ListDeliveries: { scope: 'admin', account: 'own' },
  ListDeliveryAttempts: { scope: 'admin', account: 'own' },
  Redeliver: { scope: 'admin', account: 'own' },
  SendTestEvent: { scope: 'admin', account: 'own' },
  SetDimensions: { scope: 'admin', account: 'own' },
  GetDimensions: { scope: 'read', account: 'own' },
  QueryUsage: { scope: 'read', account: 'own' },
};

/** Why an operator-only RPC is (the refusal says it). */
const OPERATOR_ONLY_WHY: Readonly<Record<string, string>> = {
  ListAccounts: 'lists every account',
  ImportCharges: 'imports charges of any account with the costs it states',
};

/** RPCs whose account is that of a nested message (the rule or endpoint written), not a field of the request. */
const NESTED: Readonly<Record<string, string>> = {
  CreateAlertRule: 'rule',
  UpdateAlertRule: 'rule',
  CreateWebhookEndpoint: 'endpoint',
  UpdateWebhookEndpoint: 'endpoint',
};

/**
 * Allows a call or throws PERMISSION_DENIED before anything is read or
 * written: the RPC must have a policy, the key its scope, and every account
 * the request names must be the key's (an empty one becomes the key's).
 */
export function authorize(method: string, who: Principal, request: unknown): void {
  const rule = POLICY[method];
  if (!rule) throw new PermissionDeniedError('NO_POLICY', `${method} has no access policy`);
  if (who.operator) return;
  if (rule.account === 'operator') throw new PermissionDeniedError('OPERATOR_ONLY', `${method} ${OPERATOR_ONLY_WHY[method] ?? 'spans accounts'}: it needs the operator key`);
  if (!who.scopes.has(rule.scope)) throw new PermissionDeniedError('MISSING_SCOPE', `this API key lacks the ${rule.scope} scope that ${method} needs`);
  const nested = NESTED[method] ? (request as Record<string, unknown>)[NESTED[method]] : undefined;
  const targets = (method === 'RecordCharges' ? (request as { charges?: unknown[] }).charges ?? [] : NESTED[method] ? (nested ? [nested] : []) : [request]) as Array<{ accountId?: string }>;
  for (const target of targets) {
    if (target.accountId === undefined || target.accountId === '') {
      if (rule.account === 'own') target.accountId = who.accountId;
      else if (rule.scope === 'admin') throw new PermissionDeniedError('OPERATOR_ONLY', `${method} for every account (empty account_id) needs the operator key`);
    } else if (target.accountId !== who.accountId) {
      throw new PermissionDeniedError('WRONG_ACCOUNT', `this API key is for account "${who.accountId}", not "${target.accountId}"`);
    }
  }
}
