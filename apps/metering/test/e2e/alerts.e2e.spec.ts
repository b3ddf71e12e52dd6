import { type ClientReadableStream, status } from '@grpc/grpc-js';
import {
  AlertRuleKind,
  ChargeEvent,
  ChargeEventKind,
  CreateAlertRuleRequest,
  CreateGrantRequest,
  DeliveryAttempt,
  DeliveryStatus,
  LimitEnforcement,
  LimitMeasure,
  LimitPeriod,
  MeteringServiceClient,
  PriceRates,
  RerateMode,
  WatchChargesRequest,
  WatchChargesResponse,
  WebhookFormat,
} from '@metering/contracts';
import { retryDelayMs } from '@metering/domain';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { AddressInfo } from 'node:net';
import { databaseTargets, describeEachOf, requirePostgresInCi, TestDatabase } from '../support/databases';
import { call, grpcError, statusDetails } from '../support/grpc';
import { chargeRequest } from '../support/requests';
import { buildServer, ServerProcess, startServer, startServers } from '../support/server-process';

/**
 * Issue 17, alerts and webhooks, end to end: the real server processes, real
 * HTTP receivers on 127.0.0.1. Thresholds crossed upward and back per period
 * with concurrent charges from 3 processes on one Postgres (one alert per
 * crossing, none for a threshold not crossed); retries through 500s, closed
 * connections and timeouts with the same webhook-id and the logged schedule
 * of the domain's backoff; a process killed mid-delivery; signatures checked
 * with an HMAC written here from the Standard Webhooks specification; a
 * rotated secret; an endpoint disabled after the retry window; Slack bodies;
 * hostile input named by field.
 */
beforeAll(() => buildServer());
requirePostgresInCi();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The retry policy the servers here run with (fast, so the suites take seconds). */
const POLICY = { baseDelayMs: 150, maxDelayMs: 1000, windowMs: 30_000 };
const ENV = {
  METERING_WEBHOOK_ALLOWED_HOSTS: '127.0.0.1',
  METERING_WEBHOOK_POLL_MS: '50',
  METERING_WEBHOOK_TIMEOUT_MS: '1500',
  METERING_WEBHOOK_RETRY_BASE_MS: String(POLICY.baseDelayMs),
  METERING_WEBHOOK_RETRY_MAX_MS: String(POLICY.maxDelayMs),
  METERING_WEBHOOK_RETRY_SECONDS: String(POLICY.windowMs / 1000),
  METERING_WEBHOOK_MAX_RESPONSE_BYTES: '4096',
  METERING_ALERT_PERIOD_SWEEP_MS: '100',
};

interface Received {
  headers: IncomingMessage['headers'];
  body: string;
}

type Behaviour = 'ok' | 'fail' | 'close' | 'hang' | 'huge';

/** A webhook receiver on 127.0.0.1: records every request; `behave` says how to answer the nth (0-based). */
class Receiver {
  readonly received: Received[] = [];
  behave: (n: number, r: Received) => Behaviour = () => 'ok';
  private server!: Server;
  private readonly hanging: ServerResponse[] = [];
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const r = { headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
        const n = this.received.push(r) - 1;
        const how = this.behave(n, r);
        if (how === 'ok') res.writeHead(200, { 'content-type': 'text/plain' }).end('thanks');
        else if (how === 'fail') res.writeHead(500, { 'content-type': 'text/plain' }).end('boom');
        else if (how === 'close') req.socket.destroy();
        else if (how === 'huge') res.writeHead(200).end('x'.repeat(1_000_000));
        else this.hanging.push(res);
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`;
    return this;
  }

  async until(n: number, ms = 20_000): Promise<Received[]> {
    const deadline = Date.now() + ms;
    while (this.received.length < n && Date.now() < deadline) await sleep(20);
    return this.received;
  }

  async stop(): Promise<void> {
    for (const res of this.hanging) res.destroy();
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/**
 * Verifies a request as the Standard Webhooks specification says, written
 * here without the server's library: the signed content is
 * `${webhook-id}.${webhook-timestamp}.${body}`, HMAC-SHA256 with the base64
 * key after "whsec_", base64, and the header lists "v1,<signature>" entries.
 */
function verifiedWith(secret: string, r: Received): boolean {
  const id = String(r.headers['webhook-id']);
  const timestamp = String(r.headers['webhook-timestamp']);
  const expected = createHmac('sha256', Buffer.from(secret.replace(/^whsec_/, ''), 'base64')).update(`${id}.${timestamp}.${r.body}`).digest();
  return String(r.headers['webhook-signature'])
    .split(' ')
    .some((entry) => {
      const [version, sig] = entry.split(',');
      const given = Buffer.from(sig ?? '', 'base64');
      return version === 'v1' && given.length === expected.length && timingSafeEqual(given, expected);
    });
}

/** An account's price for a self-hosted model: 1000 prompt tokens cost 1 USD, whatever the account's rates are called. */
const setPrice = (client: MeteringServiceClient, accountId: string, inputPerMillion: string) =>
  call(client.setPrice, client, { accountId, provider: 'selfhosted', model: 'm', effectiveTime: { seconds: '946684800', nanos: 0 }, rates: PriceRates.fromPartial({ inputPerMillion, outputPerMillion: '0' }), source: 'test', actor: '' });

const charge = (client: MeteringServiceClient, accountId: string, key: string, userId = 'u1', over = {}) =>
  call(client.recordCharge, client, chargeRequest({ accountId, userId, idempotencyKey: key, provider: 'selfhosted', model: 'm', promptTokens: '1000', completionTokens: '0', ...over }));

const usd = (amount: string) => ({ amount, currencyCode: 'USD' });

const spendRule = (accountId: string, period: LimitPeriod, amounts: string[], over: { userId?: string; eachUser?: boolean; description?: string } = {}) =>
  CreateAlertRuleRequest.fromPartial({ rule: { accountId, description: over.description ?? '', kind: AlertRuleKind.ALERT_RULE_KIND_SPEND, spend: { period, userId: over.userId ?? '', eachUser: over.eachUser ?? false, amounts: amounts.map(usd) } } });

const balanceRule = (accountId: string, amounts: string[], description = '') =>
  CreateAlertRuleRequest.fromPartial({ rule: { accountId, description, kind: AlertRuleKind.ALERT_RULE_KIND_BALANCE, balance: { amounts: amounts.map(usd) } } });

const grantCredits = (client: MeteringServiceClient, accountId: string, key: string, amount: string) =>
  call(client.createGrant, client, CreateGrantRequest.fromPartial({ accountId, idempotencyKey: key, amount: usd(amount), reason: 'test', actor: 'ops@example.com' }));

/** The balance alerts the receiver got for an account, one per webhook-id: "type threshold@available". */
const balanceAlertsOf = (received: Received[], accountId: string) => {
  const byId = new Map(received.map((r) => [String(r.headers['webhook-id']), JSON.parse(r.body) as { type: string; data: Record<string, string> }]));
  return [...byId.values()].filter((b) => b.data.kind === 'balance' && b.data.account_id === accountId).map((b) => `${b.type} ${b.data.threshold}@${b.data.available}`);
};

const endpoint = (client: MeteringServiceClient, accountId: string, url: string, over = {}) =>
  call(client.createWebhookEndpoint, client, { endpoint: { accountId, endpointId: '', url, description: 'test', enabled: true, eventTypes: [], format: WebhookFormat.WEBHOOK_FORMAT_STANDARD, secret: '', disabledReason: '', createTime: undefined, updateTime: undefined, ...over } });

/** Waits until the account has no pending delivery (and at least `min`), then returns every delivery. */
async function settled(client: MeteringServiceClient, accountId: string, min: number) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { deliveries } = await call(client.listDeliveries, client, { accountId, endpointId: '', status: 0, pageSize: 1000, pageToken: '' });
    if ((deliveries.length >= min && deliveries.every((d) => d.status !== DeliveryStatus.DELIVERY_STATUS_PENDING)) || Date.now() > deadline) return deliveries;
    await sleep(50);
  }
}

/** What the receiver got, as the alerts' content: one entry per distinct webhook-id. */
const alertsOf = (received: Received[]) => {
  const byId = new Map(received.map((r) => [String(r.headers['webhook-id']), JSON.parse(r.body) as { type: string; data: Record<string, string> }]));
  return [...byId.values()].map((b) => `${b.type} ${b.data.description}:${b.data.user_id || '*'}:${b.data.period}:${b.data.threshold}`).sort();
};

function watch(client: MeteringServiceClient, accountId: string) {
  const events: ChargeEvent[] = [];
  const stream: ClientReadableStream<WatchChargesResponse> = client.watchCharges(WatchChargesRequest.fromPartial({ accountId, afterSequence: '0' }));
  stream.on('data', (r: WatchChargesResponse) => events.push(r.event!));
  stream.on('error', () => undefined);
  return {
    events,
    async until(pred: (e: ChargeEvent[]) => boolean) {
      const deadline = Date.now() + 20_000;
      while (!pred(events) && Date.now() < deadline) await sleep(20);
      return events;
    },
    cancel: () => stream.cancel(),
  };
}

/** Checks the logged attempts against the domain's schedule: each retry was due at (end of the attempt before) + retryDelayMs, and did not start earlier. */
function expectSchedule(id: string, attempts: DeliveryAttempt[]) {
  const ms = (t: { seconds: string; nanos: number } | undefined) => Number(t!.seconds) * 1000 + Math.floor(t!.nanos / 1e6);
  for (let n = 0; n < attempts.length - 1; n++) {
    const a = attempts[n];
    expect(ms(a.nextAttemptTime)).toBe(ms(a.startTime) + Number(a.latencyMs) + retryDelayMs(POLICY, a.attempt, id));
    expect(ms(attempts[n + 1].startTime)).toBeGreaterThanOrEqual(ms(a.nextAttemptTime));
  }
}

describe.each(databaseTargets())('webhooks on $name', (target) => {
  let tdb: TestDatabase;
  let server: ServerProcess;
  let client: MeteringServiceClient;
  let receiver: Receiver;

  beforeAll(async () => {
    tdb = await target.create();
    server = await startServer(tdb.config, ENV);
    client = server.client;
    receiver = await new Receiver().start();
  });

  afterAll(async () => {
    await server?.stop();
    await receiver?.stop();
    await tdb?.drop();
  });

  it('retries a receiver that answers 500, closes the connection and times out, with the same webhook-id, each attempt logged on the schedule', async () => {
    const { endpoint: ep } = await endpoint(client, 'retry', receiver.url);
    const start = receiver.received.length;
    const plan: Behaviour[] = ['fail', 'close', 'hang', 'ok'];
    receiver.behave = (n) => plan[n - start] ?? 'ok';
    const { delivery } = await call(client.sendTestEvent, client, { accountId: 'retry', endpointId: ep!.endpointId });
    const got = (await receiver.until(start + 4)).slice(start);
    const [done] = await settled(client, 'retry', 1);
    expect(done.status).toBe(DeliveryStatus.DELIVERY_STATUS_DELIVERED);
    expect(got.map((r) => r.headers['webhook-id'])).toEqual(Array(4).fill(delivery!.deliveryId));
    expect(got.every((r) => verifiedWith(ep!.secret, r))).toBe(true);
    expect(JSON.parse(got[0].body)).toMatchObject({ type: 'webhook.test', data: { account_id: 'retry', endpoint_id: ep!.endpointId } });
    const { attempts } = await call(client.listDeliveryAttempts, client, { accountId: 'retry', deliveryId: delivery!.deliveryId });
    expect(attempts.map((a) => [a.attempt, a.httpStatus, a.success, a.error.replace(/\d+/g, 'N'), a.responseExcerpt])).toEqual([
      [1, 500, false, '', 'boom'],
      [2, 0, false, 'connection closed', ''],
      [3, 0, false, 'timeout after N ms', ''],
      [4, 200, true, '', 'thanks'],
    ]);
    expect(attempts[3].nextAttemptTime).toBeUndefined();
    expectSchedule(delivery!.deliveryId, attempts);
  });

  it('bounds what it reads of an answer, and redelivers a delivery with the same webhook-id', async () => {
    const { endpoint: ep } = await endpoint(client, 'big', receiver.url);
    const start = receiver.received.length;
    receiver.behave = () => 'huge';
    const { delivery } = await call(client.sendTestEvent, client, { accountId: 'big', endpointId: ep!.endpointId });
    await settled(client, 'big', 1);
    const { attempts } = await call(client.listDeliveryAttempts, client, { accountId: 'big', deliveryId: delivery!.deliveryId });
    expect(attempts.map((a) => [a.httpStatus, a.success, a.error, a.responseExcerpt.length])).toEqual([[200, true, 'response larger than 4096 bytes (cut)', 1024]]);
    receiver.behave = () => 'ok';
    const again = await call(client.redeliver, client, { accountId: 'big', deliveryId: delivery!.deliveryId });
    expect(again.delivery?.status).toBe(DeliveryStatus.DELIVERY_STATUS_PENDING);
    await receiver.until(start + 2);
    await settled(client, 'big', 1);
    expect(receiver.received.slice(start).map((r) => r.headers['webhook-id'])).toEqual([delivery!.deliveryId, delivery!.deliveryId]);
  });

  it('signs with a rotated secret only, and posts a Slack body to a Slack endpoint when a charge crosses a threshold', async () => {
    receiver.behave = () => 'ok';
    await setPrice(client, 'slack', '1000');
    const { endpoint: ep } = await endpoint(client, 'slack', receiver.url, { format: WebhookFormat.WEBHOOK_FORMAT_SLACK });
    const { endpoint: rotated } = await call(client.rotateWebhookSecret, client, { accountId: 'slack', endpointId: ep!.endpointId });
    expect(rotated!.secret).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    expect(rotated!.secret).not.toBe(ep!.secret);
    expect((await call(client.getWebhookEndpoint, client, { accountId: 'slack', endpointId: ep!.endpointId })).endpoint?.secret).toBe('');
    await call(client.createAlertRule, client, spendRule('slack', LimitPeriod.LIMIT_PERIOD_DAY, ['2'], { description: 'team budget' }));
    const start = receiver.received.length;
    await charge(client, 'slack', 's1');
    await charge(client, 'slack', 's2');
    const [got] = (await receiver.until(start + 1)).slice(start);
    expect(verifiedWith(rotated!.secret, got)).toBe(true);
    expect(verifiedWith(ep!.secret, got)).toBe(false);
    expect(JSON.parse(got.body).text).toMatch(/^:warning: Metering alert \(team budget\): account slack reached daily spend of 2 USD: 2 USD used in the day from \d{4}-\d\d-\d\d\.$/);
  });

  it('refuses hostile input naming the field, and writes nothing', async () => {
    const bad = async (p: Promise<unknown>) => {
      const err = await grpcError(p);
      expect(err.code).toBe(status.INVALID_ARGUMENT);
      return statusDetails(err).badRequest?.fieldViolations.map((f) => f.field);
    };
    for (const url of ['http://10.0.0.1/', 'http://169.254.169.254/latest/meta-data', 'http://[::1]:1/', 'ftp://127.0.0.1/', 'http://user:pw@127.0.0.1/', 'javascript:alert(1)', `http://127.0.0.1/${'a'.repeat(3000)}`]) {
      expect([url, await bad(endpoint(client, 'hostile', url))]).toEqual([url, ['endpoint.url']]);
    }
    expect(await bad(endpoint(client, 'hostile', receiver.url, { eventTypes: ['alert.*'], format: 99 }))).toEqual(['endpoint.event_types[0]', 'endpoint.format']);
    expect(await bad(call(client.createAlertRule, client, spendRule('hostile', LimitPeriod.LIMIT_PERIOD_DAY, ['-1', '1e9', '99999999999999999999'])))).toEqual([
      'rule.spend.amounts[0].amount',
      'rule.spend.amounts[1].amount',
      'rule.spend.amounts[2].amount',
    ]);
    expect(await bad(call(client.createAlertRule, client, { rule: { accountId: 'hostile', ruleId: '', description: '\u0000', kind: 7, limit: undefined, spend: undefined, balance: undefined, createTime: undefined, updateTime: undefined } }))).toEqual([
      'rule.description',
      'rule.kind',
    ]);
    expect(await bad(call(client.createAlertRule, client, CreateAlertRuleRequest.fromPartial({})))).toEqual(['rule']);
    expect(await bad(call(client.listDeliveryAttempts, client, { accountId: 'hostile', deliveryId: "msg_'; DROP TABLE x" }))).toEqual(['delivery_id']);
    expect(await bad(call(client.getAlertRule, client, { accountId: 'hostile', ruleId: '../x' }))).toEqual(['rule_id']);
    expect(await bad(call(client.listDeliveries, client, { accountId: 'hostile', endpointId: '', status: 0, pageSize: -1, pageToken: 'forged' }))).toEqual(['page_size', 'page_token']);
    expect((await call(client.listWebhookEndpoints, client, { accountId: 'hostile' })).endpoints).toEqual([]);
    expect((await call(client.listAlertRules, client, { accountId: 'hostile' })).rules).toEqual([]);
    const missing = await grpcError(call(client.getWebhookEndpoint, client, { accountId: 'hostile', endpointId: '00000000-0000-4000-8000-000000000000' }));
    expect([missing.code, statusDetails(missing).errorInfo?.reason]).toEqual([status.NOT_FOUND, 'WEBHOOK_ENDPOINT_NOT_FOUND']);
  });
});

describe.each(databaseTargets())('balance alerts on $name', (target) => {
  let tdb: TestDatabase;
  let server: ServerProcess;
  let client: MeteringServiceClient;
  let receiver: Receiver;

  beforeAll(async () => {
    tdb = await target.create();
    server = await startServer(tdb.config, ENV);
    client = server.client;
    receiver = await new Receiver().start();
  });

  afterAll(async () => {
    await server?.stop();
    await receiver?.stop();
    await tdb?.drop();
  });

  it('tells each amount once when charges take the available balance below it, signed, and once when a grant lifts it back; the rule is listed and hostile amounts are named', async () => {
    const A = 'prepaid';
    await setPrice(client, A, '1000'); // a charge of 1000 prompt tokens: 1 USD
    // A rule without credits is accepted; it is idle until the account has a balance.
    const { rule } = await call(client.createAlertRule, client, balanceRule(A, ['7', '4'], 'credits low'));
    expect(rule).toMatchObject({ kind: AlertRuleKind.ALERT_RULE_KIND_BALANCE, balance: { amounts: [usd('4'), usd('7')] }, spend: undefined, limit: undefined });
    expect((await call(client.listAlertRules, client, { accountId: A })).rules.map((r) => [r.ruleId, r.kind, r.balance?.amounts.map((m) => m.amount)])).toEqual([
      [rule!.ruleId, AlertRuleKind.ALERT_RULE_KIND_BALANCE, ['4', '7']],
    ]);
    const { endpoint: ep } = await endpoint(client, A, receiver.url);
    await grantCredits(client, A, 'g1', '10');
    const stream = watch(client, A);
    for (let n = 1; n <= 7; n++) await charge(client, A, `c${n}`); // 10 -> 3: below 7 at 6, below 4 at 3
    await settled(client, A, 2);
    expect(balanceAlertsOf(receiver.received, A)).toEqual(['alert.triggered 7@6', 'alert.triggered 4@3']);
    const available = (await call(client.getBalance, client, { accountId: A, userId: '' })).balance?.available;
    expect(available?.amount).toBe('3');
    await grantCredits(client, A, 'g2', '2'); // 5: back above 4, still below 7
    await settled(client, A, 3);
    expect(balanceAlertsOf(receiver.received, A)).toEqual(['alert.triggered 7@6', 'alert.triggered 4@3', 'alert.resolved 4@5']);
    const mine = receiver.received.filter((r) => JSON.parse(r.body).data.account_id === A);
    expect(mine.every((r) => verifiedWith(ep!.secret, r))).toBe(true);
    expect(new Set(mine.map((r) => r.headers['webhook-id'])).size).toBe(3);
    expect(JSON.parse(mine[0].body).data).toEqual({
      account_id: A, rule_id: rule!.ruleId, kind: 'balance', description: 'credits low', direction: 'triggered', user_id: '', measure: 'cost', threshold: '7', available: '6', changed_by_user_id: 'u1',
    });
    // The charge stream carries the same alerts.
    const events = await stream.until((e) => e.filter((x) => x.alert).length >= 3);
    stream.cancel();
    expect(events.filter((e) => e.alert).map((e) => [e.kind, e.alert!.kind, e.alert!.threshold, e.alert!.available, e.alert!.period, e.alert!.used])).toEqual([
      [ChargeEventKind.CHARGE_EVENT_KIND_ALERT_TRIGGERED, AlertRuleKind.ALERT_RULE_KIND_BALANCE, '7', '6', LimitPeriod.LIMIT_PERIOD_UNSPECIFIED, ''],
      [ChargeEventKind.CHARGE_EVENT_KIND_ALERT_TRIGGERED, AlertRuleKind.ALERT_RULE_KIND_BALANCE, '4', '3', LimitPeriod.LIMIT_PERIOD_UNSPECIFIED, ''],
      [ChargeEventKind.CHARGE_EVENT_KIND_ALERT_RESOLVED, AlertRuleKind.ALERT_RULE_KIND_BALANCE, '4', '5', LimitPeriod.LIMIT_PERIOD_UNSPECIFIED, ''],
    ]);
    const bad = async (p: Promise<unknown>) => statusDetails(await grpcError(p)).badRequest?.fieldViolations.map((v) => v.field);
    expect(await bad(call(client.createAlertRule, client, balanceRule(A, ['0', '-1', 'lots'])))).toEqual(['rule.balance.amounts[0].amount', 'rule.balance.amounts[1].amount', 'rule.balance.amounts[2].amount']);
    expect(await bad(call(client.createAlertRule, client, CreateAlertRuleRequest.fromPartial({ rule: { accountId: A, kind: AlertRuleKind.ALERT_RULE_KIND_BALANCE } })))).toEqual(['rule.balance']);
    expect((await call(client.listAlertRules, client, { accountId: A })).rules.length).toBe(1);
  });
});

describe.each(databaseTargets())('an endpoint that keeps failing on $name', (target) => {
  let tdb: TestDatabase;
  let server: ServerProcess;
  let receiver: Receiver;

  beforeAll(async () => {
    tdb = await target.create();
    server = await startServer(tdb.config, { ...ENV, METERING_WEBHOOK_RETRY_SECONDS: '1', METERING_METRICS_PORT: '0' });
    receiver = await new Receiver().start();
    receiver.behave = () => 'fail';
  });

  afterAll(async () => {
    await server?.stop();
    await receiver?.stop();
    await tdb?.drop();
  });

  it('is disabled once a delivery fails for the whole retry window, and its account is told on the charge stream', async () => {
    const client = server.client;
    await setPrice(client, 'flaky', '1000');
    const { endpoint: ep } = await endpoint(client, 'flaky', receiver.url);
    await call(client.createAlertRule, client, spendRule('flaky', LimitPeriod.LIMIT_PERIOD_DAY, ['1', '3']));
    const stream = watch(client, 'flaky');
    await charge(client, 'flaky', 'f1');
    const events = await stream.until((e) => e.some((x) => x.kind === ChargeEventKind.CHARGE_EVENT_KIND_WEBHOOK_ENDPOINT_DISABLED));
    stream.cancel();
    expect(events.map((e) => e.kind)).toEqual([
      ChargeEventKind.CHARGE_EVENT_KIND_CHARGE_RECORDED,
      ChargeEventKind.CHARGE_EVENT_KIND_ALERT_TRIGGERED,
      ChargeEventKind.CHARGE_EVENT_KIND_WEBHOOK_ENDPOINT_DISABLED,
    ]);
    expect(events[1].alert).toMatchObject({ direction: 1, threshold: '1', used: '1', kind: AlertRuleKind.ALERT_RULE_KIND_SPEND, period: LimitPeriod.LIMIT_PERIOD_DAY, changedByUserId: 'u1' });
    const disabled = events[2].webhookEndpoint!;
    expect(disabled).toMatchObject({ endpointId: ep!.endpointId, enabled: false, secret: '' });
    expect(disabled.disabledReason).toMatch(/still failed after \d+ attempts within the retry window: HTTP 500$/);
    const [delivery] = await settled(client, 'flaky', 1);
    expect(delivery.status).toBe(DeliveryStatus.DELIVERY_STATUS_FAILED);
    const { attempts } = await call(client.listDeliveryAttempts, client, { accountId: 'flaky', deliveryId: delivery.deliveryId });
    expect(attempts.length).toBe(delivery.attemptCount);
    expect(attempts.every((a) => a.httpStatus === 500)).toBe(true);
    expectSchedule(delivery.deliveryId, attempts);
    // The last attempt has no next: the next one would have been past the window.
    expect(attempts[attempts.length - 1].nextAttemptTime).toBeUndefined();
    // Operators see it in the metrics: every attempt failed, one delivery failed for good, none pending.
    const line = server.logs.map((l) => (l.startsWith('{') ? (JSON.parse(l) as { msg?: string; metrics_port?: number }) : {})).find((l) => l.msg === 'metrics');
    const metrics = await (await fetch(`http://127.0.0.1:${line?.metrics_port}/metrics`)).text();
    const value = (name: string) => Number(metrics.split('\n').find((l) => l.startsWith(`${name} `))?.split(' ')[1]);
    expect([value('metering_webhook_attempts_total{outcome="failed"}'), value('metering_webhook_deliveries{status="failed"}'), value('metering_webhook_deliveries{status="pending"}')]).toEqual([attempts.length, 1, 0]);
    // A disabled endpoint gets no new deliveries (the alert of 3 USD is on the stream only); enabling it again clears the reason.
    await charge(client, 'flaky', 'f2', 'u1', { promptTokens: '5000' });
    const re = await call(client.updateWebhookEndpoint, client, { endpoint: { ...disabled, enabled: true } });
    expect(re.endpoint).toMatchObject({ enabled: true, disabledReason: '' });
    expect((await call(client.listDeliveries, client, { accountId: 'flaky', endpointId: '', status: 0, pageSize: 10, pageToken: '' })).deliveries.length).toBe(1);
  });
});

const postgres = databaseTargets().filter((t) => t.name === 'postgres');

describeEachOf(postgres, 'three server processes on one Postgres')('alerts from three server processes on $name', (target) => {
  let tdb: TestDatabase;
  let servers: ServerProcess[] = [];
  let receiver: Receiver;
  const ACCOUNT = 'shared';

  beforeAll(async () => {
    tdb = await target.create();
    servers = await startServers(tdb.config, 3, ENV);
    receiver = await new Receiver().start();
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await receiver?.stop();
    await tdb?.drop();
  });

  it('alerts exactly once per threshold crossed upward and back, per period, with concurrent charges from 3 processes, and never for one not crossed', async () => {
    const [a] = servers.map((s) => s.client);
    await setPrice(a, ACCOUNT, '1000'); // 1000 prompt tokens: 1 USD
    const { endpoint: ep } = await endpoint(a, ACCOUNT, receiver.url);
    await call(a.putLimit, a, { accountId: ACCOUNT, userId: '', period: LimitPeriod.LIMIT_PERIOD_DAY, measure: LimitMeasure.LIMIT_MEASURE_COST, amount: '40', enforcement: LimitEnforcement.LIMIT_ENFORCEMENT_HARD });
    await call(a.createAlertRule, a, spendRule(ACCOUNT, LimitPeriod.LIMIT_PERIOD_DAY, ['10', '25', '1000'], { description: 'day' }));
    await call(a.createAlertRule, a, spendRule(ACCOUNT, LimitPeriod.LIMIT_PERIOD_MONTH, ['20'], { description: 'month' }));
    await call(a.createAlertRule, a, spendRule(ACCOUNT, LimitPeriod.LIMIT_PERIOD_DAY, ['5'], { description: 'each', eachUser: true }));
    await call(a.createAlertRule, a, {
      rule: { accountId: ACCOUNT, ruleId: '', description: 'limit', kind: AlertRuleKind.ALERT_RULE_KIND_LIMIT, spend: undefined, balance: undefined, createTime: undefined, updateTime: undefined,
        limit: { userId: '', period: LimitPeriod.LIMIT_PERIOD_DAY, measure: LimitMeasure.LIMIT_MEASURE_COST, enforcement: LimitEnforcement.LIMIT_ENFORCEMENT_HARD, percentages: ['50', '100'] } },
    });
    // 30 charges of 1 USD, 10 per user, sent to the three processes at once.
    await Promise.all(Array.from({ length: 30 }, (_, n) => charge(servers[n % 3].client, ACCOUNT, `c${n}`, `u${(n % 3) + 1}`)));
    await settled(a, ACCOUNT, 7);
    expect(alertsOf(receiver.received)).toEqual([
      'alert.triggered day:*:day:10',
      'alert.triggered day:*:day:25',
      'alert.triggered each:u1:day:5',
      'alert.triggered each:u2:day:5',
      'alert.triggered each:u3:day:5',
      'alert.triggered limit:*:day:20',
      'alert.triggered month:*:month:20',
    ]);
    expect(receiver.received.every((r) => verifiedWith(ep!.secret, r))).toBe(true);

    // Back: a price correction halves every charge's cost (30 -> 15 USD): the thresholds now above the usage resolve, once.
    await setPrice(a, ACCOUNT, '500');
    const today = new Date().toISOString().slice(0, 10);
    await call(a.rerateCharges, a, { accountId: ACCOUNT, startDate: today, endDate: today, mode: RerateMode.RERATE_MODE_ALL, provider: '', model: '', dryRun: false });
    await receiver.until(10);
    await settled(a, ACCOUNT, 10);
    expect(alertsOf(receiver.received).filter((x) => x.startsWith('alert.resolved'))).toEqual(['alert.resolved day:*:day:25', 'alert.resolved limit:*:day:20', 'alert.resolved month:*:month:20']);

    // Up again in the same period: 15 -> 30 USD crosses 20 (the limit's 50%, the month) and 25 once more; 10 and 5 were never left.
    await Promise.all(Array.from({ length: 30 }, (_, n) => charge(servers[n % 3].client, ACCOUNT, `d${n}`, `u${(n % 3) + 1}`)));
    await settled(a, ACCOUNT, 13);
    const all = alertsOf(receiver.received);
    expect(all.filter((x) => x.startsWith('alert.triggered')).length).toBe(10);
    expect(all.filter((x) => x.includes(':1000') || x.includes(':40'))).toEqual([]);
    // Every delivery is one alert event of the charge stream.
    const stream = watch(a, ACCOUNT);
    const events = await stream.until((e) => e.filter((x) => x.alert).length >= 13);
    stream.cancel();
    expect(events.filter((e) => e.alert).length).toBe(13);
    expect(new Set(receiver.received.map((r) => r.headers['webhook-id'])).size).toBe(13);
  });

  it('alerts per period: usage of another day crosses that day\'s thresholds on their own, and an alert of a period that ended is resolved once', async () => {
    const [a, b] = servers.map((s) => s.client);
    await setPrice(a, 'periods', '1000');
    await endpoint(a, 'periods', receiver.url);
    await call(a.createAlertRule, a, spendRule('periods', LimitPeriod.LIMIT_PERIOD_DAY, ['3'], { description: 'p' }));
    const start = receiver.received.length;
    const yesterday = { seconds: String(Math.floor(Date.now() / 1000) - 86_400), nanos: 0 };
    await Promise.all([0, 1, 2, 3].map((n) => charge([a, b][n % 2], 'periods', `t${n}`)));
    await Promise.all([0, 1, 2, 3].map((n) => charge([a, b][n % 2], 'periods', `y${n}`, 'u1', { usageTime: yesterday })));
    await receiver.until(start + 3);
    await settled(a, 'periods', 3);
    const bodies = receiver.received.slice(start).map((r) => JSON.parse(r.body) as { type: string; data: Record<string, string> });
    const today = bodies.find((x) => x.type === 'alert.triggered' && x.data.period_start === new Date().toISOString().slice(0, 10));
    const before = bodies.filter((x) => x !== today);
    // The charge that crossed it saw 3 or 4 USD (a group commit may write two of the four together).
    expect([today?.data.threshold, Number(today?.data.used) >= 3]).toEqual(['3', true]);
    // Yesterday's day is over: its alert is resolved by the period-end sweep of one of the three processes, once, with the day's final usage.
    expect(before.map((x) => [x.type, x.data.threshold, x.data.period_ended])).toEqual([
      ['alert.triggered', '3', undefined],
      ['alert.resolved', '3', 'true'],
    ]);
    expect(before[1].data.used).toBe('4');
    expect(before[0].data.period_start).toBe(before[1].data.period_start);
    expect(bodies.length).toBe(3);
  });

  it('tells a balance threshold crossed by concurrent charges from 3 processes exactly once, and never one not crossed', async () => {
    const [a] = servers.map((s) => s.client);
    const A = 'prepaid-shared';
    receiver.behave = () => 'ok';
    await setPrice(a, A, '1000'); // 1 USD a charge
    await endpoint(a, A, receiver.url);
    await grantCredits(a, A, 'g', '30');
    await call(a.createAlertRule, a, balanceRule(A, ['15', '5']));
    // 20 charges of 1 USD sent to the three processes at once: 30 -> 10 crosses 15, never 5.
    await Promise.all(Array.from({ length: 20 }, (_, n) => charge(servers[n % 3].client, A, `b${n}`, `u${(n % 3) + 1}`)));
    await settled(a, A, 1);
    const available = (await call(a.getBalance, a, { accountId: A, userId: '' })).balance?.available;
    expect(available?.amount).toBe('10');
    const told = balanceAlertsOf(receiver.received, A);
    expect(told.map((x) => x.split('@')[0])).toEqual(['alert.triggered 15']);
    // It carries the balance after the transaction that crossed it (a group commit may write several charges at once): below 15, not below the final 10.
    const after = Number(told[0].split('@')[1]);
    expect([after < 15, after >= 10]).toEqual([true, true]);
    const { deliveries } = await call(a.listDeliveries, a, { accountId: A, endpointId: '', status: 0, pageSize: 100, pageToken: '' });
    expect(deliveries.map((d) => [d.eventType, d.status])).toEqual([['alert.triggered', DeliveryStatus.DELIVERY_STATUS_DELIVERED]]);
  });

  it('delivers what a process killed mid-delivery had claimed, from another process, with the same webhook-id', async () => {
    // One process left: the one that will be killed while the receiver holds its request.
    await Promise.all(servers.slice(1).map((s) => s.stop()));
    const victim = servers[0];
    const { endpoint: ep } = await endpoint(victim.client, 'killed', receiver.url);
    const start = receiver.received.length;
    receiver.behave = (n) => (n === start ? 'hang' : 'ok');
    const { delivery } = await call(victim.client.sendTestEvent, victim.client, { accountId: 'killed', endpointId: ep!.endpointId });
    await receiver.until(start + 1);
    await victim.stop('SIGKILL');
    const heir = await startServer(tdb.config, ENV);
    servers = [heir];
    const got = (await receiver.until(start + 2)).slice(start);
    expect(got.map((r) => r.headers['webhook-id'])).toEqual([delivery!.deliveryId, delivery!.deliveryId]);
    const [done] = await settled(heir.client, 'killed', 1);
    expect(done.status).toBe(DeliveryStatus.DELIVERY_STATUS_DELIVERED);
    // The killed attempt was never logged; the next one is attempt 2, by the other process.
    const { attempts } = await call(heir.client.listDeliveryAttempts, heir.client, { accountId: 'killed', deliveryId: delivery!.deliveryId });
    expect(attempts.map((x) => [x.attempt, x.httpStatus, x.success])).toEqual([[2, 200, true]]);
    expect(verifiedWith(ep!.secret, got[1])).toBe(true);
  });
});
