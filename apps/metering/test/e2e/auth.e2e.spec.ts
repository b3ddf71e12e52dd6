import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import * as pb from '@metering/contracts';
import { randomBytes } from 'node:crypto';
import { POLICY } from '../../src/grpc/auth';
import { closeDatabase, openDatabase } from '../../src/store/db';
import { databaseTargets, requirePostgresInCi, TestDatabase } from '../support/databases';
import { bearer, call, grpcError, statusDetails } from '../support/grpc';
import { buildServer, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 7, tenants and credentials, end to end: the real server with API keys
 * required. Every RPC called with another account's key is PERMISSION_DENIED
 * and reads or writes nothing; missing, malformed and revoked keys are
 * UNAUTHENTICATED; scopes are enforced; an empty account_id is the key's own.
 */
beforeAll(() => buildServer());
requirePostgresInCi();

type Method = keyof typeof pb.MeteringServiceService;
const VICTIM = 'victim';
const RESERVATION = '00000000-0000-4000-8000-000000000000';
const tokens = { promptTokens: '10', completionTokens: '5' };

/** A valid request of every RPC, naming the victim's account (or its resources). */
const REQUESTS: Record<Method, object> = {
  recordCharge: { accountId: VICTIM, userId: 'u1', idempotencyKey: 'stolen', provider: 'openai', model: 'gpt-4o', ...tokens },
  recordCharges: { charges: [{ accountId: VICTIM, userId: 'u1', idempotencyKey: 'stolen-batch', provider: 'openai', model: 'gpt-4o', ...tokens }] },
  importCharges: { charges: [{ charge: { accountId: VICTIM, userId: 'u1', idempotencyKey: 'stolen-import', provider: 'openai', model: 'gpt-4o', ...tokens, usageTime: { seconds: '1767225600', nanos: 0 } }, keptCost: { promptCost: { amount: '0', currencyCode: 'USD' }, completionCost: { amount: '0', currencyCode: 'USD' } } }] },
  getDailyUsage: { accountId: VICTIM, startDate: '2026-01-01', endDate: '2026-12-31' },
  checkLimits: { accountId: VICTIM, userId: 'u1', reserve: true, idempotencyKey: 'stolen-hold', additionalTokens: '1' },
  setLimits: { accountId: VICTIM, dailyMessageLimit: '0' },
  getLimits: { accountId: VICTIM },
  putLimit: { accountId: VICTIM, period: pb.LimitPeriod.LIMIT_PERIOD_DAY, measure: pb.LimitMeasure.LIMIT_MEASURE_MESSAGES, amount: '0' },
  deleteLimit: { accountId: VICTIM, period: pb.LimitPeriod.LIMIT_PERIOD_DAY, measure: pb.LimitMeasure.LIMIT_MEASURE_COST },
  listLimits: { accountId: VICTIM },
  releaseReservation: { accountId: VICTIM, reservationId: RESERVATION },
  getReservation: { accountId: VICTIM, reservationId: RESERVATION },
  setAccount: { accountId: VICTIM, timeZone: 'Asia/Tokyo' },
  getAccount: { accountId: VICTIM },
  setMarkup: { accountId: VICTIM, chargeType: pb.ChargeType.CHARGE_TYPE_COMPLETION, provider: 'openai', model: 'gpt-4o', factor: '0.01' },
  listMarkups: { accountId: VICTIM },
  deleteMarkup: { accountId: VICTIM, chargeType: pb.ChargeType.CHARGE_TYPE_COMPLETION, provider: 'openai', model: 'gpt-4o' },
  listPricingChanges: { accountId: VICTIM },
  listModels: { accountId: VICTIM, provider: 'selfhosted' },
  getPrice: { accountId: VICTIM, provider: 'selfhosted', model: 'secret-model' },
  estimateCost: { accountId: VICTIM, provider: 'selfhosted', model: 'secret-model', ...tokens },
  setPrice: { accountId: VICTIM, provider: 'selfhosted', model: 'secret-model', rates: { inputPerMillion: '0', outputPerMillion: '0' }, source: 'x' },
  deletePrice: { accountId: VICTIM, provider: 'selfhosted', model: 'secret-model', effectiveTime: { seconds: '1767225600', nanos: 0 } },
  rerateCharges: { accountId: VICTIM, startDate: '2026-01-01', endDate: '2026-12-31', mode: pb.RerateMode.RERATE_MODE_ALL },
  createApiKey: { accountId: VICTIM, name: 'backdoor', scopes: [pb.ApiKeyScope.API_KEY_SCOPE_ADMIN] },
  revokeApiKey: { accountId: VICTIM, keyId: 'k_000000000000' },
  listApiKeys: { accountId: VICTIM },
  watchCharges: { accountId: VICTIM, afterSequence: '0' },
  getCharge: { accountId: VICTIM, idempotencyKey: 'real' },
  listCharges: { accountId: VICTIM, startDate: '2026-01-01', endDate: '2026-12-31' },
  exportCharges: { accountId: VICTIM, startDate: '2026-01-01', endDate: '2026-12-31', format: pb.ExportFormat.EXPORT_FORMAT_CSV },
  listReservations: { accountId: VICTIM },
  listAccounts: { accountIdPrefix: VICTIM },
  createGrant: { accountId: VICTIM, idempotencyKey: 'stolen-grant', amount: { amount: '1000', currencyCode: 'USD' } },
  voidGrant: { accountId: VICTIM, grantId: RESERVATION },
  listGrants: { accountId: VICTIM },
  getBalance: { accountId: VICTIM },
  listBalanceEntries: { accountId: VICTIM },
  setCreditPolicy: { accountId: VICTIM, policy: pb.CreditPolicy.CREDIT_POLICY_ALLOW_OVERAGE },
  createAlertRule: { rule: { accountId: VICTIM, kind: pb.AlertRuleKind.ALERT_RULE_KIND_SPEND, spend: { period: pb.LimitPeriod.LIMIT_PERIOD_DAY, amounts: [{ amount: '1', currencyCode: 'USD' }] } } },
  getAlertRule: { accountId: VICTIM, ruleId: RESERVATION },
  listAlertRules: { accountId: VICTIM },
  updateAlertRule: { rule: { accountId: VICTIM, ruleId: RESERVATION, kind: pb.AlertRuleKind.ALERT_RULE_KIND_SPEND, spend: { period: pb.LimitPeriod.LIMIT_PERIOD_DAY, amounts: [{ amount: '1', currencyCode: 'USD' }] } } },
  deleteAlertRule: { accountId: VICTIM, ruleId: RESERVATION },
  createWebhookEndpoint: { endpoint: { accountId: VICTIM, url: 'https://hooks.example.com/x', enabled: true } },
  getWebhookEndpoint: { accountId: VICTIM, endpointId: RESERVATION },
  listWebhookEndpoints: { accountId: VICTIM },
  updateWebhookEndpoint: { endpoint: { accountId: VICTIM, endpointId: RESERVATION, url: 'https://hooks.example.com/x', enabled: true } },
  deleteWebhookEndpoint: { accountId: VICTIM, endpointId: RESERVATION },
  rotateWebhookSecret: { accountId: VICTIM, endpointId: RESERVATION },
  listDeliveries: { accountId: VICTIM },
  listDeliveryAttempts: { accountId: VICTIM, deliveryId: `msg_${RESERVATION}` },
  redeliver: { accountId: VICTIM, deliveryId: `msg_${RESERVATION}` },
  sendTestEvent: { accountId: VICTIM, endpointId: RESERVATION },
  setDimensions: { accountId: VICTIM, tagKeys: ['feature'] },
  getDimensions: { accountId: VICTIM },
  queryUsage: { accountId: VICTIM, startDate: '2026-01-01', endDate: '2026-12-31' },
};

const pascal = (m: string) => m[0].toUpperCase() + m.slice(1);

/** Calls any RPC by name through the generated client's definitions, as a backend's stub does. */
function invoke(client: pb.MeteringServiceClient, method: Method, request: object, metadata: Metadata): Promise<unknown> {
  const def = pb.MeteringServiceService[method];
  const message = (pb as unknown as Record<string, { fromPartial(o: object): unknown }>)[`${pascal(method)}Request`].fromPartial(request);
  if (def.responseStream) {
    // A stream: its first message (or its error) within 2 s; then it is cancelled.
    return new Promise((resolve, reject) => {
      const stream = client.makeServerStreamRequest(def.path, def.requestSerialize as (v: unknown) => Buffer, def.responseDeserialize as (b: Buffer) => unknown, message, metadata, { deadline: Date.now() + 10_000 });
      const timer = setTimeout(() => {
        stream.cancel();
        resolve(undefined);
      }, 2000);
      stream.on('data', (d: unknown) => {
        clearTimeout(timer);
        stream.cancel();
        resolve(d);
      });
      stream.on('error', (err: ServiceError) => {
        clearTimeout(timer);
        if (err.code === status.CANCELLED) resolve(undefined);
        else reject(err);
      });
    });
  }
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(def.path, def.requestSerialize as (v: unknown) => Buffer, def.responseDeserialize, message, metadata, { deadline: Date.now() + 10_000 }, (err: ServiceError | null, res?: unknown) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

describe.each(databaseTargets())('API keys and tenants on $name', (target) => {
  const operatorKey = randomBytes(32).toString('base64url');
  let tdb: TestDatabase;
  let server: ServerProcess;
  let client: pb.MeteringServiceClient;
  const keys: Record<string, { secret: string; keyId: string }> = {};
  const asOperator = bearer(operatorKey);

  /** What the victim's account holds, as the operator reads it through the API. */
  const victimState = async () => {
    const md = asOperator;
    return {
      usage: await call(client.getDailyUsage, client, pb.GetDailyUsageRequest.fromPartial({ accountId: VICTIM, startDate: '2026-01-01', endDate: '2026-12-31' }), md),
      limits: await call(client.listLimits, client, pb.ListLimitsRequest.fromPartial({ accountId: VICTIM }), md),
      account: await call(client.getAccount, client, { accountId: VICTIM }, md),
      markups: await call(client.listMarkups, client, { accountId: VICTIM, provider: '' }, md),
      changes: await call(client.listPricingChanges, client, pb.ListPricingChangesRequest.fromPartial({ accountId: VICTIM }), md),
      keys: await call(client.listApiKeys, client, { accountId: VICTIM }, md),
      models: await call(client.listModels, client, pb.ListModelsRequest.fromPartial({ accountId: VICTIM, provider: 'selfhosted' }), md),
    };
  };

  beforeAll(async () => {
    tdb = await target.create();
    server = await startServer(tdb.config, { METERING_AUTH: 'keys', METERING_OPERATOR_KEY: operatorKey });
    client = server.client;
    for (const [name, account, scopes] of [
      ['attacker', 'attacker', [1, 2, 3]],
      ['victim', VICTIM, [1, 2, 3]],
      ['victimRead', VICTIM, [2]],
      ['victimRecord', VICTIM, [1]],
    ] as const) {
      const created = await call(client.createApiKey, client, { accountId: account, name, scopes: [...scopes] }, asOperator);
      keys[name] = { secret: created.secret, keyId: created.key!.keyId };
      expect(created.key).toMatchObject({ accountId: account, name, revokeTime: undefined });
      expect(created.secret.startsWith('mk.')).toBe(true);
    }
    // The victim's own data, written with its own key.
    const victim = bearer(keys.victim.secret);
    await invoke(client, 'recordCharge', { ...REQUESTS.recordCharge, idempotencyKey: 'real' }, victim);
    await invoke(client, 'putLimit', { ...REQUESTS.putLimit, amount: '1000' }, victim);
    await invoke(client, 'setPrice', { ...REQUESTS.setPrice, rates: { inputPerMillion: '7', outputPerMillion: '9' } }, victim);
    await invoke(client, 'setMarkup', { ...REQUESTS.setMarkup, factor: '1.5' }, victim);
  });

  afterAll(async () => {
    await server?.stop();
    await tdb?.drop();
  });

  it('has a policy and a request here for every RPC of the service', () => {
    const methods = Object.keys(pb.MeteringServiceService).sort();
    expect(Object.keys(REQUESTS).sort()).toEqual(methods);
    expect(Object.keys(POLICY).sort()).toEqual(methods.map(pascal).sort());
  });

  it('answers every RPC called with another account\'s key with PERMISSION_DENIED, and nothing is read or written', async () => {
    const before = await victimState();
    const dbBefore = target.name === 'postgres' ? await tableCounts(tdb) : undefined;
    for (const method of Object.keys(REQUESTS) as Method[]) {
      const err = await grpcError(invoke(client, method, REQUESTS[method], bearer(keys.attacker.secret)));
      expect([method, err.code]).toEqual([method, status.PERMISSION_DENIED]);
      // An RPC that spans accounts (ListAccounts) is the operator's alone.
      expect([method, statusDetails(err).errorInfo?.reason]).toEqual([method, POLICY[pascal(method)].account === 'operator' ? 'OPERATOR_ONLY' : 'WRONG_ACCOUNT']);
      expect(err.details).not.toMatch(/secret-model|1000|1\.5/);
    }
    expect(await victimState()).toEqual(before);
    if (dbBefore) expect(await tableCounts(tdb)).toEqual(dbBefore);
  });

  it('answers every RPC without a key, with a malformed or unknown key, and with a revoked key UNAUTHENTICATED', async () => {
    const forged = `mk.${Buffer.from(VICTIM).toString('base64url')}.${keys.victim.keyId}.${randomBytes(32).toString('base64url')}`;
    const revoked = await call(client.createApiKey, client, { accountId: VICTIM, name: 'old', scopes: [1, 2, 3] }, bearer(keys.victim.secret));
    await call(client.revokeApiKey, client, { accountId: '', keyId: revoked.key!.keyId }, bearer(keys.victim.secret));
    for (const md of [new Metadata(), bearer('nonsense'), bearer(forged), bearer(revoked.secret), bearer(`${operatorKey}x`)]) {
      for (const method of Object.keys(REQUESTS) as Method[]) {
        const err = await grpcError(invoke(client, method, REQUESTS[method], md));
        expect([method, err.code]).toEqual([method, status.UNAUTHENTICATED]);
      }
    }
    const basic = new Metadata();
    basic.set('authorization', `Basic ${Buffer.from(`x:${keys.victim.secret}`).toString('base64')}`);
    expect((await grpcError(invoke(client, 'getAccount', {}, basic))).code).toBe(status.UNAUTHENTICATED);
  });

  it('enforces scopes, fills an empty account_id with the key\'s own account, and keeps the defaults of every account to the operator', async () => {
    const read = bearer(keys.victimRead.secret);
    const record = bearer(keys.victimRecord.secret);
    const denied = await grpcError(invoke(client, 'recordCharge', { ...REQUESTS.recordCharge, accountId: '' }, read));
    expect([denied.code, statusDetails(denied).errorInfo?.reason]).toEqual([status.PERMISSION_DENIED, 'MISSING_SCOPE']);
    const recorded = (await invoke(client, 'recordCharge', { ...REQUESTS.recordCharge, accountId: '', idempotencyKey: 'own' }, record)) as pb.RecordChargeResponse;
    expect(recorded.charge?.accountId).toBe(VICTIM);
    expect(((await invoke(client, 'getDailyUsage', { ...REQUESTS.getDailyUsage, accountId: '' }, read)) as pb.GetDailyUsageResponse).totals?.messageCount).toBe('2');
    expect((await grpcError(invoke(client, 'putLimit', REQUESTS.putLimit, record))).code).toBe(status.PERMISSION_DENIED);
    const global = await grpcError(invoke(client, 'setMarkup', { ...REQUESTS.setMarkup, accountId: '' }, bearer(keys.victim.secret)));
    expect([global.code, statusDetails(global).errorInfo?.reason]).toEqual([status.PERMISSION_DENIED, 'OPERATOR_ONLY']);
    // Reading the defaults of every account (empty account_id) is open to any key with the read scope.
    expect(((await invoke(client, 'listModels', { provider: 'openai' }, read)) as pb.ListModelsResponse).prices.length).toBeGreaterThan(5);
    await invoke(client, 'setMarkup', { ...REQUESTS.setMarkup, accountId: '', factor: '1.1' }, asOperator);
    const batch = await grpcError(invoke(client, 'recordCharges', { charges: [{ ...REQUESTS.recordCharge, accountId: '', idempotencyKey: 'b1' }, { ...REQUESTS.recordCharge, accountId: 'attacker', idempotencyKey: 'b2' }] }, record));
    expect(batch.code).toBe(status.PERMISSION_DENIED);
    // The operator lists every account; an account's own admin key may not.
    const listed = (await invoke(client, 'listAccounts', {}, asOperator)) as pb.ListAccountsResponse;
    expect(listed.accounts.map((a) => a.account?.accountId)).toEqual(expect.arrayContaining(['attacker', VICTIM]));
    const own = await grpcError(invoke(client, 'listAccounts', {}, bearer(keys.victim.secret)));
    expect([own.code, statusDetails(own).errorInfo?.reason]).toEqual([status.PERMISSION_DENIED, 'OPERATOR_ONLY']);
    // Importing charges with kept costs is the operator's alone, even into the key's own account.
    const ownImport = await grpcError(invoke(client, 'importCharges', { charges: [{ charge: { ...REQUESTS.recordCharge, accountId: '', usageTime: { seconds: '1767225600', nanos: 0 } } }] }, bearer(keys.victim.secret)));
    expect([ownImport.code, statusDetails(ownImport).errorInfo?.reason]).toEqual([status.PERMISSION_DENIED, 'OPERATOR_ONLY']);
  });

  it('lists keys without their secrets and stores only a hash', async () => {
    const { keys: listed } = await call(client.listApiKeys, client, { accountId: '' }, bearer(keys.victim.secret));
    expect(listed.map((k) => k.name)).toEqual(expect.arrayContaining(['victim', 'victimRead', 'victimRecord', 'old']));
    expect(JSON.stringify(listed)).not.toContain(keys.victim.secret.split('.')[3]);
    if (target.name === 'postgres') {
      const db = openDatabase(tdb.config);
      try {
        const rows = await db('api_keys').select('secret_hash');
        expect(rows.some((r: { secret_hash: string }) => r.secret_hash.includes(keys.victim.secret.split('.')[3]))).toBe(false);
        expect(rows.every((r: { secret_hash: string }) => r.secret_hash.length === 43)).toBe(true);
      } finally {
        await closeDatabase(db);
      }
    }
  });
});

async function tableCounts(tdb: TestDatabase): Promise<Record<string, number>> {
  const db = openDatabase(tdb.config);
  try {
    const tables = ['charges', 'daily_usage', 'usage_counters', 'limits', 'markups', 'prices', 'pricing_changes', 'reservations', 'accounts', 'api_keys', 'alert_rules', 'webhook_endpoints', 'webhook_deliveries'];
    return Object.fromEntries(await Promise.all(tables.map(async (t) => [t, Number((await db(t).count<{ n: string }[]>('* as n'))[0].n)])));
  } finally {
    await closeDatabase(db);
  }
}
