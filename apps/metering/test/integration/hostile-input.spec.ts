import { MeteringServiceService } from '@metering/contracts';
import { DomainError, RecordChargeRequestInput, ValidationError } from '@metering/domain';
import { PriceTable } from '@metering/pricing';
import fc from 'fast-check';
import { isDeepStrictEqual } from 'node:util';
import { ChargesService } from '../../src/services/charges.service';
import { DimensionsService } from '../../src/services/dimensions.service';
import { CreditsService } from '../../src/services/credits.service';
import { ChargeQueriesService } from '../../src/services/charge-queries.service';
import { LimitsService } from '../../src/services/limits.service';
import { MarkupsService } from '../../src/services/markups.service';
import { PricingService } from '../../src/services/pricing.service';
import { RerateService } from '../../src/services/rerate.service';
import { ReservationsService } from '../../src/services/reservations.service';
import { AccountsService } from '../../src/services/accounts.service';
import { ApiKeysService } from '../../src/services/api-keys.service';
import { EventNotifier, EventsService } from '../../src/services/events.service';
import { UsageService } from '../../src/services/usage.service';
import { AlertsService } from '../../src/services/alerts.service';
import { DEFAULT_ALLOWED_HOSTS, parseAllowList } from '@metering/domain';
import { closeDatabase, Db, migrate, openDatabase } from '../../src/store/db';
import { embeddedTarget } from '../support/databases';
import { HOSTILE } from '../support/hostile';

/**
 * Property-based fuzzing of every RPC's service with hostile input, on the
 * embedded database (100,000 generated requests in all): a valid request with
 * one to three fields replaced by hostile values of that field's kind must be
 * rejected with a ValidationError naming every replaced field, never crash,
 * and write nothing. And hostile-looking but valid text (SQL, quotes,
 * emoji) is stored verbatim.
 */
const NOW = new Date('2026-11-23T12:00:00Z');
const clock = () => NOW;
const usd = (amount: string) => ({ amount, currencyCode: 'USD' });
const TOTAL_RUNS = 100_000; // spread evenly over the RPCs and their variants

const charge: RecordChargeRequestInput = {
  accountId: 'fuzz', userId: 'u1', idempotencyKey: 'k', sessionKey: '', provider: 'openai', model: 'gpt-4o', chargeType: 0, requestType: 0,
  promptTokens: '100', completionTokens: '200', reasoningTokens: '0', cachedPromptTokens: '0', cacheWriteTokens: '0', cacheWrite1hTokens: '0',
  callCount: '0', reference: '', endpoint: '', responseTimeMs: undefined, wasCached: false, hadError: false, errorMessage: '', metadata: {}, usageTime: undefined,
  reservationId: '',
};
const rates = { inputPerMillion: '1', outputPerMillion: '2', cachedInputPerMillion: '', cacheWritePerMillion: '', cacheWrite1hPerMillion: '', reasoningPerMillion: '', perCall: '', longContext: undefined };
const tokens = { promptTokens: '10', completionTokens: '5', reasoningTokens: '0', cachedPromptTokens: '0', cacheWriteTokens: '0', cacheWrite1hTokens: '0' };

interface Rpc {
  name: string;
  base: object;
  /** Request key -> [wire field name, kind of hostile values]. */
  fields: Record<string, [string, keyof typeof HOSTILE]>;
  call: (req: never) => Promise<unknown>;
}

describe.each(embeddedTarget())('hostile input on $name', (target) => {
  let db: Db;
  let drop: () => Promise<void>;
  let rpcs: Rpc[];
  const counts = async () => {
    const tables = [
      'charges', 'daily_usage', 'usage_counters', 'limits', 'markups', 'prices', 'pricing_changes', 'reservations', 'accounts', 'api_keys', 'charge_events', 'event_sequences',
      'credit_accounts', 'credit_grants', 'credit_entries', 'credit_overage', 'alert_rules', 'webhook_endpoints', 'webhook_deliveries',
    ];
    return Object.fromEntries(await Promise.all(tables.map(async (t) => [t, Number((await db(t).count<{ n: string }[]>('* as n'))[0].n)])));
  };

  beforeAll(async () => {
    const tdb = await target.create();
    drop = tdb.drop;
    db = openDatabase(tdb.config);
    await migrate(db);
    const pricing = new PricingService(db, new PriceTable(), clock);
    const charges = new ChargesService(db, pricing, clock);
    const limits = new LimitsService(db, new PricingService(db, new PriceTable(), clock), clock);
    const markups = new MarkupsService(db);
    const usage = new UsageService(db);
    const rerate = new RerateService(db, pricing);
    const reservations = new ReservationsService(db, clock);
    const accounts = new AccountsService(db);
    const apiKeys = new ApiKeysService(db, clock);
    const events = new EventsService(db, new EventNotifier());
    const chargeQueries = new ChargeQueriesService(db);
    const credits = new CreditsService(db, clock);
    const dimensions = new DimensionsService(db, clock);
    const alerts = new AlertsService(db, parseAllowList(DEFAULT_ALLOWED_HOSTS), clock);
    const UUID = '00000000-0000-4000-8000-000000000000';
    const spendRule = { accountId: 'fuzz', ruleId: '', description: '', kind: 2, spend: { period: 1, userId: '', eachUser: false, amounts: [{ amount: '1', currencyCode: 'USD' }] } };
    const limitRule = { accountId: 'fuzz', ruleId: '', description: '', kind: 1, limit: { userId: '', period: 1, measure: 3, enforcement: 0, percentages: ['50', '100'] } };
    const ruleFields: Rpc['fields'] = { accountId: ['rule.account_id', 'requiredId'], description: ['rule.description', 'text'], kind: ['rule.kind', 'requiredEnum'] };
    const webhook = { accountId: 'fuzz', endpointId: '', url: 'https://hooks.example.com/x', description: '', enabled: true, eventTypes: [], format: 0 };
    const webhookFields: Rpc['fields'] = {
      accountId: ['endpoint.account_id', 'requiredId'], url: ['endpoint.url', 'url'], description: ['endpoint.description', 'text'], eventTypes: ['endpoint.event_types', 'eventTypes'], format: ['endpoint.format', 'enum'],
    };
    const ruleRef = { accountId: 'fuzz', ruleId: UUID };
    const ruleRefFields: Rpc['fields'] = { accountId: ['account_id', 'requiredId'], ruleId: ['rule_id', 'requiredUuid'] };
    const endpointRef = { accountId: 'fuzz', endpointId: UUID };
    const endpointRefFields: Rpc['fields'] = { accountId: ['account_id', 'requiredId'], endpointId: ['endpoint_id', 'requiredUuid'] };
    const deliveryRef = { accountId: 'fuzz', deliveryId: `msg_${UUID}` };
    const deliveryRefFields: Rpc['fields'] = { accountId: ['account_id', 'requiredId'], deliveryId: ['delivery_id', 'deliveryId'] };
    const accountOnly: Rpc['fields'] = { accountId: ['account_id', 'requiredId'] };
    const check = { accountId: 'fuzz', userId: 'u1', additionalTokens: '0', additionalCost: undefined, reserve: false, idempotencyKey: '', estimate: undefined, holdSeconds: 0, denyAsError: false };
    const limitKey = { accountId: 'fuzz', userId: '', period: 1, measure: 2, enforcement: 0 };
    const limitKeyFields: Rpc['fields'] = { accountId: ['account_id', 'requiredId'], userId: ['user_id', 'id'], period: ['period', 'requiredEnum'], measure: ['measure', 'requiredEnum'], enforcement: ['enforcement', 'enum'] };
    const reservationRef = { accountId: 'fuzz', reservationId: '00000000-0000-4000-8000-000000000000' };
    const reservationFields: Rpc['fields'] = { accountId: ['account_id', 'requiredId'], reservationId: ['reservation_id', 'requiredUuid'] };
    const chargeFields: Rpc['fields'] = {
      accountId: ['account_id', 'requiredId'], userId: ['user_id', 'requiredId'], idempotencyKey: ['idempotency_key', 'key'], sessionKey: ['session_key', 'text'],
      provider: ['provider', 'provider'], model: ['model', 'model'], chargeType: ['charge_type', 'enum'], requestType: ['request_type', 'enum'],
      promptTokens: ['prompt_tokens', 'int'], completionTokens: ['completion_tokens', 'int'], reasoningTokens: ['reasoning_tokens', 'int'],
      cachedPromptTokens: ['cached_prompt_tokens', 'int'], cacheWriteTokens: ['cache_write_tokens', 'int'], cacheWrite1hTokens: ['cache_write_1h_tokens', 'int'],
      callCount: ['call_count', 'int'], reference: ['reference', 'text'], endpoint: ['endpoint', 'text'], responseTimeMs: ['response_time_ms', 'int'],
      metadata: ['metadata', 'metadata'], usageTime: ['usage_time', 'time'], reservationId: ['reservation_id', 'uuid'], tags: ['tags', 'tags'],
    };
    const markupKey = { accountId: '', chargeType: 1, provider: 'openai', model: 'gpt-4o', actor: '' };
    const markupFields: Rpc['fields'] = { accountId: ['account_id', 'id'], chargeType: ['charge_type', 'enum'], provider: ['provider', 'provider'], model: ['model', 'model'], actor: ['actor', 'text'] };
    const page = { accountId: 'fuzz', pageSize: 0, pageToken: '' };
    const pageFields: Rpc['fields'] = { accountId: ['account_id', 'requiredId'], pageSize: ['page_size', 'pageSize'], pageToken: ['page_token', 'pageToken'] };
    const range = { accountId: 'fuzz', startDate: '2026-11-01', endDate: '2026-11-30' };
    const rangeFields: Rpc['fields'] = { accountId: ['account_id', 'requiredId'], startDate: ['start_date', 'requiredDay'], endDate: ['end_date', 'requiredDay'] };
    rpcs = [
      { name: 'RecordCharge', base: charge, fields: chargeFields, call: (r: RecordChargeRequestInput) => charges.recordCharge(r) },
      {
        name: 'RecordCharges (one charge)', base: charge, fields: chargeFields,
        call: async (r: RecordChargeRequestInput) => {
          const [result] = await charges.recordCharges([r]);
          if (result instanceof DomainError) throw result;
          return result;
        },
      },
      {
        // ImportCharges: the charge's fields under `charge.`, the kept cost's under `kept_cost.`.
        name: 'ImportCharges (one charge)',
        base: { ...charge, usageTime: { seconds: String(Math.floor(clock().getTime() / 1000) - 86_400), nanos: 0 }, promptCost: usd('0.01'), completionCost: usd('0.02'), totalCost: undefined, source: '' },
        fields: {
          ...Object.fromEntries(Object.entries(chargeFields).map(([k, [field, kind]]) => [k, [`charge.${field}`, kind]])),
          promptCost: ['kept_cost.prompt_cost', 'money'], completionCost: ['kept_cost.completion_cost', 'money'], totalCost: ['kept_cost.total_cost', 'money'], source: ['kept_cost.source', 'text'],
        },
        call: async ({ promptCost, completionCost, totalCost, source, ...r }: RecordChargeRequestInput & Record<'promptCost' | 'completionCost' | 'totalCost', undefined | { amount: string; currencyCode: string }> & { source: string }) => {
          const [result] = await charges.importCharges([{ charge: r, keptCost: { promptCost, completionCost, totalCost, source, markup: '' } }]);
          if (result instanceof DomainError) throw result;
          return result;
        },
      },
      {
        name: 'GetDailyUsage', base: { ...range, userId: '', provider: '', model: '', chargeType: 0, pageSize: 0, pageToken: '' },
        fields: { ...rangeFields, userId: ['user_id', 'id'], provider: ['provider', 'provider'], model: ['model', 'model'], chargeType: ['charge_type', 'enum'], pageSize: ['page_size', 'pageSize'], pageToken: ['page_token', 'pageToken'] },
        call: (r: never) => usage.getDailyUsage(r),
      },
      {
        name: 'CheckLimits', base: check,
        fields: { accountId: ['account_id', 'requiredId'], userId: ['user_id', 'requiredId'], additionalTokens: ['additional_tokens', 'bigInt'], additionalCost: ['additional_cost', 'money'], tags: ['tags', 'tags'] },
        call: (r: never) => limits.checkLimits(r),
      },
      {
        name: 'CheckLimits (reserve)', base: { ...check, reserve: true, idempotencyKey: 'r', holdSeconds: 60 },
        fields: { accountId: ['account_id', 'requiredId'], userId: ['user_id', 'requiredId'], additionalTokens: ['additional_tokens', 'bigInt'], idempotencyKey: ['idempotency_key', 'key'], holdSeconds: ['hold_seconds', 'holdSeconds'], tags: ['tags', 'tags'] },
        call: (r: never) => limits.checkLimits(r),
      },
      {
        name: 'CheckLimits (estimate)', base: { ...check, estimate: { provider: 'openai', model: 'gpt-4o', chargeType: 0, callCount: '0', ...tokens } },
        fields: { accountId: ['account_id', 'requiredId'], userId: ['user_id', 'requiredId'], additionalCost: ['additional_cost', 'money'], holdSeconds: ['hold_seconds', 'holdSeconds'] },
        call: (r: never) => limits.checkLimits(r),
      },
      { name: 'PutLimit', base: { ...limitKey, amount: '10' }, fields: { ...limitKeyFields, amount: ['amount', 'amount'] }, call: (r: never) => limits.putLimit(r) },
      { name: 'DeleteLimit', base: limitKey, fields: limitKeyFields, call: (r: never) => limits.deleteLimit(r) },
      {
        name: 'ListLimits', base: { accountId: 'fuzz', userId: '', pageSize: 0, pageToken: '' },
        fields: { accountId: ['account_id', 'requiredId'], userId: ['user_id', 'id'], pageSize: ['page_size', 'pageSize'], pageToken: ['page_token', 'pageToken'] },
        call: (r: never) => limits.listLimits(r),
      },
      { name: 'ReleaseReservation', base: reservationRef, fields: reservationFields, call: (r: never) => reservations.release(r) },
      { name: 'GetReservation', base: reservationRef, fields: reservationFields, call: (r: never) => reservations.get(r) },
      {
        name: 'ListReservations', base: { accountId: 'fuzz', userId: '', pageSize: 0, pageToken: '' },
        fields: { accountId: ['account_id', 'requiredId'], userId: ['user_id', 'id'], pageSize: ['page_size', 'pageSize'], pageToken: ['page_token', 'pageToken'] },
        call: (r: never) => reservations.list(r),
      },
      {
        name: 'ListAccounts', base: { accountIdPrefix: '', pageSize: 0, pageToken: '' },
        fields: { accountIdPrefix: ['account_id_prefix', 'id'], pageSize: ['page_size', 'pageSize'], pageToken: ['page_token', 'pageToken'] },
        call: (r: never) => accounts.list(r),
      },
      { name: 'SetAccount', base: { accountId: 'fuzz', timeZone: 'Europe/Berlin' }, fields: { accountId: ['account_id', 'requiredId'], timeZone: ['time_zone', 'timeZone'] }, call: (r: never) => accounts.setAccount(r) },
      { name: 'GetAccount', base: { accountId: 'fuzz' }, fields: { accountId: ['account_id', 'requiredId'] }, call: (r: never) => accounts.getAccount(r) },
      {
        name: 'CreateApiKey', base: { accountId: 'fuzz', name: 'backend', scopes: [1] },
        fields: { accountId: ['account_id', 'requiredId'], name: ['name', 'key'], scopes: ['scopes', 'scopes'] },
        call: (r: never) => apiKeys.create(r),
      },
      { name: 'RevokeApiKey', base: { accountId: 'fuzz', keyId: 'k_000000000000' }, fields: { accountId: ['account_id', 'requiredId'], keyId: ['key_id', 'keyId'] }, call: (r: never) => apiKeys.revoke(r) },
      {
        name: 'WatchCharges', base: { accountId: 'fuzz', afterSequence: '0', userId: '', provider: '', model: '' },
        fields: { accountId: ['account_id', 'requiredId'], afterSequence: ['after_sequence', 'sequence'], userId: ['user_id', 'id'], provider: ['provider', 'provider'], model: ['model', 'model'] },
        call: (r: never) => events.open(r),
      },
      { name: 'ListApiKeys', base: { accountId: 'fuzz' }, fields: { accountId: ['account_id', 'requiredId'] }, call: (r: never) => apiKeys.list(r) },
      {
        name: 'SetLimits', base: { accountId: 'fuzz', userId: '', dailyMessageLimit: '10', dailyTokenLimit: '1000', dailyCostLimit: { amount: '5', currencyCode: 'USD' } },
        fields: { accountId: ['account_id', 'requiredId'], userId: ['user_id', 'id'], dailyMessageLimit: ['daily_message_limit', 'int'], dailyTokenLimit: ['daily_token_limit', 'bigInt'], dailyCostLimit: ['daily_cost_limit', 'money'] },
        call: (r: never) => limits.setLimits(r),
      },
      { name: 'GetLimits', base: { accountId: 'fuzz', userId: '' }, fields: { accountId: ['account_id', 'requiredId'], userId: ['user_id', 'id'] }, call: (r: never) => limits.getLimits(r) },
      { name: 'SetMarkup', base: { ...markupKey, factor: '1.5' }, fields: { ...markupFields, factor: ['factor', 'factor'] }, call: (r: never) => markups.setMarkup(r) },
      { name: 'ListMarkups', base: { provider: '', accountId: '' }, fields: { provider: ['provider', 'provider'], accountId: ['account_id', 'id'] }, call: (r: never) => markups.listMarkups(r) },
      { name: 'DeleteMarkup', base: markupKey, fields: markupFields, call: (r: never) => markups.deleteMarkup(r) },
      {
        name: 'ListPricingChanges', base: { accountId: '', pageSize: 0, pageToken: '' },
        fields: { accountId: ['account_id', 'id'], pageSize: ['page_size', 'pageSize'], pageToken: ['page_token', 'pageToken'] },
        call: (r: never) => pricing.listPricingChanges(r),
      },
      {
        name: 'ListModels', base: { provider: '', accountId: '', at: undefined, includeHistory: false, pageSize: 0, pageToken: '', name: '' },
        fields: { provider: ['provider', 'provider'], accountId: ['account_id', 'id'], at: ['at', 'time'], pageSize: ['page_size', 'pageSize'], pageToken: ['page_token', 'pageToken'] },
        call: (r: never) => pricing.listModels(r),
      },
      {
        name: 'GetPrice', base: { provider: 'openai', model: 'gpt-4o', accountId: '', at: undefined },
        fields: { provider: ['provider', 'provider'], model: ['model', 'model'], accountId: ['account_id', 'id'], at: ['at', 'time'] },
        call: (r: never) => pricing.getPrice(r),
      },
      {
        name: 'EstimateCost', base: { accountId: '', provider: 'openai', model: 'gpt-4o', chargeType: 0, callCount: '0', at: undefined, ...tokens },
        fields: {
          accountId: ['account_id', 'id'], provider: ['provider', 'provider'], model: ['model', 'model'], chargeType: ['charge_type', 'enum'], callCount: ['call_count', 'int'],
          at: ['at', 'time'], promptTokens: ['prompt_tokens', 'int'], completionTokens: ['completion_tokens', 'int'], cacheWrite1hTokens: ['cache_write_1h_tokens', 'int'],
        },
        call: (r: never) => pricing.estimateCost(r),
      },
      {
        name: 'SetPrice', base: { accountId: '', provider: 'selfhosted', model: 'm', effectiveTime: undefined, rates, source: 'contract', actor: '' },
        fields: { accountId: ['account_id', 'id'], provider: ['provider', 'provider'], model: ['model', 'model'], effectiveTime: ['effective_time', 'time'], rates: ['rates', 'rates'], source: ['source', 'key'], actor: ['actor', 'text'] },
        call: (r: never) => pricing.setPrice(r),
      },
      {
        name: 'DeletePrice', base: { accountId: '', provider: 'selfhosted', model: 'm', effectiveTime: { seconds: '1767225600', nanos: 0 }, actor: '' },
        fields: { accountId: ['account_id', 'id'], provider: ['provider', 'provider'], model: ['model', 'model'], effectiveTime: ['effective_time', 'time'], actor: ['actor', 'text'] },
        call: (r: never) => pricing.deletePrice(r),
      },
      {
        name: 'GetCharge (by id)', base: { accountId: 'fuzz', chargeId: '00000000-0000-4000-8000-000000000000', idempotencyKey: '' },
        fields: { accountId: ['account_id', 'requiredId'], chargeId: ['charge_id', 'uuid'] },
        call: (r: never) => chargeQueries.getCharge(r),
      },
      {
        name: 'GetCharge (by idempotency key)', base: { accountId: 'fuzz', chargeId: '', idempotencyKey: 'k1' },
        fields: { accountId: ['account_id', 'requiredId'], idempotencyKey: ['idempotency_key', 'text'] },
        call: (r: never) => chargeQueries.getCharge(r),
      },
      {
        name: 'ListCharges', base: { ...range, userId: '', provider: '', model: '', chargeType: 0, pricingStatus: 0, pageSize: 0, pageToken: '' },
        fields: {
          ...rangeFields, userId: ['user_id', 'id'], provider: ['provider', 'provider'], model: ['model', 'model'], chargeType: ['charge_type', 'enum'],
          pricingStatus: ['pricing_status', 'enum'], pageSize: ['page_size', 'pageSize'], pageToken: ['page_token', 'pageToken'],
        },
        call: (r: never) => chargeQueries.listCharges(r),
      },
      {
        name: 'ExportCharges', base: { ...range, userId: '', provider: '', model: '', chargeType: 0, pricingStatus: 0, format: 1 },
        fields: { ...rangeFields, userId: ['user_id', 'id'], provider: ['provider', 'provider'], chargeType: ['charge_type', 'enum'], pricingStatus: ['pricing_status', 'enum'], format: ['format', 'requiredEnum'] },
        call: async (r: never) => chargeQueries.exportCharges(r),
      },
      {
        name: 'RerateCharges', base: { ...range, mode: 0, provider: '', model: '', dryRun: false },
        fields: { ...rangeFields, mode: ['mode', 'enum'], provider: ['provider', 'provider'], model: ['model', 'model'] },
        call: (r: never) => rerate.rerate(r),
      },
      {
        name: 'CreateGrant', base: { accountId: 'fuzz', idempotencyKey: 'g', userId: '', kind: 0, amount: { amount: '5', currencyCode: 'USD' }, priority: 0, effectiveTime: undefined, expireTime: undefined, reason: '', actor: '' },
        fields: {
          accountId: ['account_id', 'requiredId'], idempotencyKey: ['idempotency_key', 'key'], userId: ['user_id', 'id'], kind: ['kind', 'enum'], amount: ['amount', 'money'],
          priority: ['priority', 'int'], effectiveTime: ['effective_time', 'time'], expireTime: ['expire_time', 'time'], actor: ['actor', 'text'],
        },
        call: (r: never) => credits.createGrant(r),
      },
      {
        name: 'VoidGrant', base: { accountId: 'fuzz', grantId: '00000000-0000-4000-8000-000000000000', reason: '', actor: '' },
        fields: { accountId: ['account_id', 'requiredId'], grantId: ['grant_id', 'requiredUuid'], actor: ['actor', 'text'] },
        call: (r: never) => credits.voidGrant(r),
      },
      { name: 'ListGrants', base: page, fields: pageFields, call: (r: never) => credits.listGrants(r) },
      { name: 'ListBalanceEntries', base: page, fields: pageFields, call: (r: never) => credits.listBalanceEntries(r) },
      { name: 'GetBalance', base: { accountId: 'fuzz', userId: '' }, fields: { accountId: ['account_id', 'requiredId'], userId: ['user_id', 'id'] }, call: (r: never) => credits.getBalance(r) },
      {
        name: 'SetCreditPolicy', base: { accountId: 'fuzz', policy: 1, lowBalanceThreshold: undefined },
        fields: { accountId: ['account_id', 'requiredId'], policy: ['policy', 'requiredEnum'], lowBalanceThreshold: ['low_balance_threshold', 'money'] },
        call: (r: never) => credits.setCreditPolicy(r),
      },
      // The rule and endpoint RPCs validate their nested message (CreateAlertRuleRequest.rule, ...): the fuzzed request is that message.
      { name: 'CreateAlertRule (spend)', base: spendRule, fields: { ...ruleFields, spend: ['rule.spend', 'spendTarget'] }, call: (r: never) => alerts.createRule(r) },
      { name: 'CreateAlertRule (limit)', base: limitRule, fields: { ...ruleFields, limit: ['rule.limit', 'limitTarget'] }, call: (r: never) => alerts.createRule(r) },
      { name: 'UpdateAlertRule', base: { ...spendRule, ruleId: UUID }, fields: { ...ruleFields, ruleId: ['rule.rule_id', 'requiredUuid'], spend: ['rule.spend', 'spendTarget'] }, call: (r: never) => alerts.updateRule(r) },
      { name: 'GetAlertRule', base: ruleRef, fields: ruleRefFields, call: (r: never) => alerts.getRule(r) },
      { name: 'DeleteAlertRule', base: ruleRef, fields: ruleRefFields, call: (r: never) => alerts.deleteRule(r) },
      { name: 'ListAlertRules', base: { accountId: 'fuzz' }, fields: accountOnly, call: (r: never) => alerts.listRules(r) },
      { name: 'CreateWebhookEndpoint', base: webhook, fields: webhookFields, call: (r: never) => alerts.createEndpoint(r) },
      { name: 'UpdateWebhookEndpoint', base: { ...webhook, endpointId: UUID }, fields: { ...webhookFields, endpointId: ['endpoint.endpoint_id', 'requiredUuid'] }, call: (r: never) => alerts.updateEndpoint(r) },
      { name: 'GetWebhookEndpoint', base: endpointRef, fields: endpointRefFields, call: (r: never) => alerts.getEndpoint(r) },
      { name: 'DeleteWebhookEndpoint', base: endpointRef, fields: endpointRefFields, call: (r: never) => alerts.deleteEndpoint(r) },
      { name: 'RotateWebhookSecret', base: endpointRef, fields: endpointRefFields, call: (r: never) => alerts.rotateSecret(r) },
      { name: 'SendTestEvent', base: endpointRef, fields: endpointRefFields, call: (r: never) => alerts.sendTest(r) },
      { name: 'ListWebhookEndpoints', base: { accountId: 'fuzz' }, fields: accountOnly, call: (r: never) => alerts.listEndpoints(r) },
      {
        name: 'ListDeliveries', base: { accountId: 'fuzz', endpointId: '', status: 0, pageSize: 0, pageToken: '' },
        fields: { accountId: ['account_id', 'requiredId'], endpointId: ['endpoint_id', 'uuid'], status: ['status', 'enum'], pageSize: ['page_size', 'pageSize'], pageToken: ['page_token', 'pageToken'] },
        call: (r: never) => alerts.listDeliveries(r),
      },
      { name: 'ListDeliveryAttempts', base: deliveryRef, fields: deliveryRefFields, call: (r: never) => alerts.listAttempts(r) },
      { name: 'Redeliver', base: deliveryRef, fields: deliveryRefFields, call: (r: never) => alerts.redeliver(r) },
      { name: 'SetDimensions', base: { accountId: 'fuzz', tagKeys: ['feature'], maxValuesPerDay: 0 }, fields: { accountId: ['account_id', 'requiredId'], tagKeys: ['tag_keys', 'tagKeys'], maxValuesPerDay: ['max_values_per_day', 'maxValuesPerDay'] }, call: (r: never) => dimensions.setDimensions(r) },
      { name: 'GetDimensions', base: { accountId: 'fuzz' }, fields: accountOnly, call: (r: never) => dimensions.getDimensions(r) },
      {
        name: 'QueryUsage',
        base: { ...range, groupBy: [], groupByTags: [], granularity: 0, userId: '', provider: '', model: '', chargeType: 0, apiKeyId: '', tagFilters: {}, pageSize: 0, pageToken: '' },
        fields: {
          ...rangeFields, userId: ['user_id', 'id'], provider: ['provider', 'provider'], model: ['model', 'model'], chargeType: ['charge_type', 'enum'], granularity: ['granularity', 'enum'],
          tagFilters: ['tag_filters', 'tags'], pageSize: ['page_size', 'pageSize'], pageToken: ['page_token', 'pageToken'],
        },
        call: (r: never) => dimensions.queryUsage(r),
      },
    ];
  });

  afterAll(async () => {
    if (db) await closeDatabase(db);
    await drop?.();
  });

  it('covers every RPC of the service that takes input', () => {
    expect(new Set(rpcs.map((r) => r.name.split(' ')[0])).size).toBe(Object.keys(MeteringServiceService).length);
  });

  it('rejects 100,000 requests with hostile fields: INVALID_ARGUMENT naming every bad field, no crash, nothing written', async () => {
    const before = await counts();
    const runsPerRpc = Math.ceil(TOTAL_RUNS / rpcs.length);
    let total = 0;
    for (const rpc of rpcs) {
      const keys = Object.keys(rpc.fields);
      const arb = fc
        .uniqueArray(fc.constantFrom(...keys), { minLength: 1, maxLength: Math.min(3, keys.length) })
        .chain((picked) => fc.tuple(fc.constant(picked), fc.tuple(...picked.map((k) => fc.constantFrom(...HOSTILE[rpc.fields[k][1]])))));
      await fc.assert(
        fc.asyncProperty(arb, async ([picked, values]) => {
          total++;
          const req = { ...rpc.base, ...Object.fromEntries(picked.map((k, n) => [k, values[n]])) } as never;
          const err = await rpc.call(req).then(
            () => undefined,
            (e: unknown) => e,
          );
          if (!(err instanceof ValidationError)) throw new Error(`${rpc.name} ${JSON.stringify(picked)}: expected INVALID_ARGUMENT, got ${err instanceof Error ? err.stack : 'success'}`);
          const named = err.violations.map((v) => v.field);
          for (const k of picked) {
            const field = rpc.fields[k][0];
            if (!named.some((n) => n === field || n.startsWith(`${field}.`) || n.startsWith(`${field}[`))) throw new Error(`${rpc.name}: ${field} was bad but not named (named: ${named.join(', ')})`);
          }
        }),
        { numRuns: runsPerRpc },
      );
    }
    expect(total).toBeGreaterThanOrEqual(TOTAL_RUNS);
    expect(await counts()).toEqual(before);
  });

  // JSON objects are compared as JSON values: jsonb keeps no key order (an answer built from the request may list keys otherwise).
  it('stores hostile-looking but valid text verbatim (SQL, quotes, emoji, JSON)', async () => {
    const texty = fc.constantFrom("'; DROP TABLE charges;--", 'Robert"); DELETE FROM markups;', '💸 ünïcødé', '${jndi:ldap://x}', '<script>alert(1)</script>', '\\x00', '%s%n');
    let n = 0;
    await fc.assert(
      fc.asyncProperty(texty, texty, fc.dictionary(fc.constantFrom('q', "k'", '"k"'), texty, { maxKeys: 3 }), async (reference, errorMessage, metadata) => {
        const { charge: stored } = await new ChargesService(db, new PricingService(db, new PriceTable(), clock), clock).recordCharge({
          ...charge, idempotencyKey: `valid-${n++}`, reference, errorMessage, sessionKey: reference, metadata,
        });
        const row = await db('charges').where({ account_id: 'fuzz', charge_id: stored.chargeId }).first();
        return row.reference === reference && row.error_message === errorMessage && row.session_key === reference && isDeepStrictEqual(JSON.parse(JSON.stringify(row.metadata)), JSON.parse(JSON.stringify(stored.metadata)));
      }),
      { numRuns: 200 },
    );
    expect(await db('charges').where({ account_id: 'fuzz' }).count<{ n: string }[]>('* as n')).toEqual([{ n: '200' }]);
  });
});
