import { Dec, tokenCounts } from '@metering/pricing';
import { createHmac } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import {
  addressAllowed,
  alertData,
  balanceAlerts,
  alertCrossings,
  AlertRule,
  alertEvents,
  DEFAULT_RETRY,
  endedAt,
  eventsAfterWrite,
  nextAttemptTime,
  parseAllowList,
  periodEnded,
  periodEndNotices,
  retryDelayMs,
  slackBody,
  validateAlertRule,
  validateListDeliveries,
  validateWebhookEndpoint,
  webhookBody,
} from './alerts';
import { ValidationError } from './errors';
import { CounterState, entriesOf } from './ledger';
import { Limit, UsageChange, UsageCounter } from './limits';

const usd = (n: string | number): UsageCounter => ({ messageCount: 1n, totalTokens: 10n, totalCost: new Dec(n) });
const counter = (userId: string, period: 'day' | 'month', periodStart: string, used: UsageCounter): CounterState => ({
  accountId: 'a', userId, period, periodStart, used, reserved: { messageCount: 0n, totalTokens: 0n, totalCost: new Dec(0) },
});
const change = (userId: string, usageDate: string, cost: string | number, messages = 1n): UsageChange => ({
  accountId: 'a', userId, usageDate, used: { messageCount: messages, totalTokens: 10n * messages, totalCost: new Dec(cost) },
});
const spendRule = (amounts: number[], over: Partial<AlertRule['spend']> = {}): AlertRule => ({
  accountId: 'a', ruleId: 'r1', description: 'budget', kind: 'spend', spend: { period: 'day', userId: '', eachUser: false, amounts: amounts.map((n) => new Dec(n)), ...over },
});
const fields = (fn: () => unknown): string[] => {
  try {
    fn();
  } catch (err) {
    if (err instanceof ValidationError) return err.violations.map((v) => v.field);
    throw err;
  }
  throw new Error('expected a ValidationError');
};

describe('alert crossings', () => {
  it('fires each threshold the change took usage to or past (upward), from the counters after the write', () => {
    const rule = spendRule([5, 10, 20]);
    // 4 -> 10: crosses 5 and 10 (10 is reached: at or above), not 20.
    const alerts = alertCrossings([rule], [], [counter('', 'day', '2026-12-01', usd(10))], [change('u1', '2026-12-01', 6)]);
    expect(alerts.map((a) => [a.direction, a.threshold.toFixed(), a.used?.toFixed(), a.userId, a.changedByUserId, a.periodStart])).toEqual([
      ['triggered', '5', '10', '', 'u1', '2026-12-01'],
      ['triggered', '10', '10', '', 'u1', '2026-12-01'],
    ]);
  });

  it('fires nothing for a change that stays on one side of every threshold, and resolves one it fell back below', () => {
    const rule = spendRule([5]);
    expect(alertCrossings([rule], [], [counter('', 'day', '2026-12-01', usd(7))], [change('u1', '2026-12-01', 1)])).toEqual([]);
    expect(alertCrossings([rule], [], [counter('', 'day', '2026-12-01', usd(4))], [change('u1', '2026-12-01', 1)])).toEqual([]);
    // A re-rating that lowered the cost by 3: 6 -> 3.
    const back = alertCrossings([rule], [], [counter('', 'day', '2026-12-01', usd(3))], [change('u1', '2026-12-01', -3, 0n)]);
    expect(back.map((a) => [a.direction, a.threshold.toFixed(), a.used?.toFixed()])).toEqual([['resolved', '5', '3']]);
  });

  it('measures the period of the rule: a month rule on the month counter, a day rule per day', () => {
    const day = spendRule([5]);
    const month = { ...spendRule([8], { period: 'month' }), ruleId: 'r2' };
    const counters = [counter('', 'day', '2026-12-02', usd(5)), counter('', 'month', '2026-12-01', usd(9))];
    const alerts = alertCrossings([day, month], [], counters, [change('u1', '2026-12-02', 5)]);
    expect(alerts.map((a) => [a.ruleId, a.period, a.periodStart])).toEqual([
      ['r1', 'day', '2026-12-02'],
      ['r2', 'month', '2026-12-01'],
    ]);
  });

  it('measures one user, or each user on its own, never the account total for those', () => {
    const counters = [counter('', 'day', '2026-12-01', usd(12)), counter('u1', 'day', '2026-12-01', usd(6)), counter('u2', 'day', '2026-12-01', usd(6))];
    const changes = [change('u1', '2026-12-01', 3), change('u2', '2026-12-01', 3)];
    const one = alertCrossings([spendRule([5], { userId: 'u2' })], [], counters, changes);
    expect(one.map((a) => [a.userId, a.changedByUserId])).toEqual([['u2', 'u2']]);
    const each = alertCrossings([spendRule([5], { eachUser: true })], [], counters, changes);
    expect(each.map((a) => a.userId)).toEqual(['u1', 'u2']);
    const account = alertCrossings([spendRule([10])], [], counters, changes);
    expect(account.map((a) => [a.userId, a.used?.toFixed()])).toEqual([['', '12']]);
  });

  it('measures a limit rule in percentages of the limit as set now, in its measure; idle without the limit', () => {
    const rule: AlertRule = { accountId: 'a', ruleId: 'lim', description: '', kind: 'limit', limit: { userId: '', period: 'day', measure: 'messages', enforcement: 'hard', percentages: [new Dec(50), new Dec(100)] } };
    const limit: Limit = { accountId: 'a', userId: '', period: 'day', measure: 'messages', enforcement: 'hard', amount: new Dec(3) };
    const row = (n: bigint) => counter('', 'day', '2026-12-01', { messageCount: n, totalTokens: 0n, totalCost: new Dec(0) });
    // 50% of 3 messages is 1.5: reached by the second message.
    expect(alertCrossings([rule], [limit], [row(1n)], [change('u1', '2026-12-01', 0)])).toEqual([]);
    const half = alertCrossings([rule], [limit], [row(2n)], [change('u1', '2026-12-01', 0)]);
    expect(half.map((a) => [a.percentage?.toFixed(), a.threshold.toFixed(), a.limitAmount?.toFixed(), a.measure])).toEqual([['50', '1.5', '3', 'messages']]);
    expect(alertCrossings([rule], [limit], [row(3n)], [change('u1', '2026-12-01', 0)]).map((a) => a.percentage?.toFixed())).toEqual(['100']);
    expect(alertCrossings([rule], [], [row(3n)], [change('u1', '2026-12-01', 0)])).toEqual([]);
    expect(alertCrossings([rule], [{ ...limit, enforcement: 'soft' }], [row(3n)], [change('u1', '2026-12-01', 0)])).toEqual([]);
  });

  it('gives the events of ledger entries, and no second statement for accounts without rules or soft limits', () => {
    const charge = { accountId: 'a', userId: 'u1', usageDate: '2026-12-01', costs: { totalCost: '6' }, tokens: tokenCounts({ promptTokens: 1 }), totalTokens: 1, callCount: 0 };
    const entries = entriesOf([{ kind: 'charge_recorded', charge: charge as never }]);
    const events = alertEvents([spendRule([5])], [], [counter('', 'day', '2026-12-01', usd(6))], entries);
    expect(events.map((e) => e.kind)).toEqual(['alert_triggered']);
    expect(eventsAfterWrite([{ softLimits: [] }], entries)).toBeUndefined();
    expect(eventsAfterWrite([{ softLimits: [], alertRules: [spendRule([5])], ruleLimits: [] }], entries)?.([counter('', 'day', '2026-12-01', usd(6))]).map((e) => e.kind)).toEqual(['alert_triggered']);
  });
});

describe('periods that ended', () => {
  it('says whether an alert\'s period is over in its account\'s time zone, and resolves it with the final usage', () => {
    const [alert] = alertCrossings([spendRule([5])], [], [counter('', 'day', '2026-12-01', usd(6))], [change('u1', '2026-12-01', 6)]);
    const late = new Date('2026-12-01T23:30:00Z');
    expect([periodEnded(alert, late, 'UTC'), periodEnded(alert, late, 'Asia/Tokyo'), periodEnded(alert, late, 'America/New_York')]).toEqual([false, true, false]);
    const month = { ...alert, period: 'month' as const, periodStart: '2026-11-01' };
    expect([periodEnded(month, late, 'UTC'), periodEnded(month, new Date('2026-11-30T23:00:00Z'), 'UTC')]).toEqual([true, false]);
    const [notice] = periodEndNotices([alert], () => new Dec('7.5'));
    expect(notice).toMatchObject({ direction: 'resolved', periodEnded: true, threshold: alert.threshold, periodStart: '2026-12-01' });
    expect(notice.used?.toFixed()).toBe('7.5');
  });

  it('leaves the resolved notice of an ended period to the period-end sweep, and still alerts a late crossing upward', () => {
    const at = (cost: string) => entriesOf([{ kind: 'charge_recorded', charge: { accountId: 'a', userId: 'u1', usageDate: '2026-11-30', costs: { totalCost: cost }, tokens: tokenCounts({ promptTokens: 1 }), totalTokens: 1, callCount: 0 } as never }]);
    const settings = [{ softLimits: [], alertRules: [spendRule([5])], ruleLimits: [] }];
    const ended = endedAt(new Date('2026-12-01T10:00:00Z'), () => undefined);
    const down = at('-3');
    expect(eventsAfterWrite(settings, down, ended)?.([counter('', 'day', '2026-11-30', usd(3))])).toEqual([]);
    expect(eventsAfterWrite(settings, down)?.([counter('', 'day', '2026-11-30', usd(3))]).map((e) => e.kind)).toEqual(['alert_resolved']);
    expect(eventsAfterWrite(settings, at('6'), ended)?.([counter('', 'day', '2026-11-30', usd(6))]).map((e) => e.kind)).toEqual(['alert_triggered']);
  });
});

describe('alert rule validation', () => {
  it('accepts a spend rule and a limit rule, sorting their thresholds', () => {
    const spend = validateAlertRule({ accountId: 'a', ruleId: '', description: 'd', kind: 2, spend: { period: 2, userId: '', eachUser: true, amounts: [{ amount: '20', currencyCode: 'USD' }, { amount: '5.5', currencyCode: 'USD' }] } }, false);
    expect(spend.spend?.amounts.map(String)).toEqual(['5.5', '20']);
    const limit = validateAlertRule({ accountId: 'a', ruleId: '', description: '', kind: 1, limit: { userId: 'u1', period: 1, measure: 3, enforcement: 0, percentages: ['100', '80'] } }, false);
    expect(limit.limit).toMatchObject({ userId: 'u1', period: 'day', measure: 'cost', enforcement: 'hard' });
  });

  it('names every bad field', () => {
    expect(fields(() => validateAlertRule(undefined, false))).toEqual(['rule']);
    expect(fields(() => validateAlertRule({ accountId: '', ruleId: 'x', description: 'a\u0000', kind: 0 }, true))).toEqual(['rule.account_id', 'rule.rule_id', 'rule.description', 'rule.kind']);
    expect(
      fields(() =>
        validateAlertRule({ accountId: 'a', ruleId: '', description: '', kind: 2, spend: { period: 9, userId: 'u 1', eachUser: true, amounts: [{ amount: '0', currencyCode: 'USD' }, { amount: '1e3', currencyCode: 'EUR' }, { amount: '0', currencyCode: 'USD' }] } }, false),
      ),
    ).toEqual(['rule.spend.amounts[1].currency_code', 'rule.spend.user_id', 'rule.spend.each_user', 'rule.spend.period', 'rule.spend.amounts[0].amount', 'rule.spend.amounts[1].amount', 'rule.spend.amounts[2].amount']);
    expect(fields(() => validateAlertRule({ accountId: 'a', ruleId: '', description: '', kind: 1, limit: { userId: '', period: 1, measure: 0, enforcement: 7, percentages: ['1001', 'NaN'] } }, false))).toEqual([
      'rule.limit.measure',
      'rule.limit.enforcement',
      'rule.limit.percentages[0]',
      'rule.limit.percentages[1]',
    ]);
    expect(fields(() => validateAlertRule({ accountId: 'a', ruleId: '', description: '', kind: 1 }, false))).toEqual(['rule.limit']);
    expect(fields(() => validateAlertRule({ accountId: 'a', ruleId: '', description: '', kind: 2, spend: { period: 1, userId: '', eachUser: false, amounts: Array.from({ length: 21 }, () => ({ amount: '1', currencyCode: 'USD' })) } }, false))).toEqual(['rule.spend.amounts']);
  });
});

describe('destinations', () => {
  const pub = parseAllowList('');
  const local = parseAllowList('127.0.0.1, *.internal.example, hooks.slack.com, 10.0.0.0/8');

  it('allows only public addresses by default', () => {
    expect(['8.8.8.8', '2606:4700::1111'].map((a) => addressAllowed(a, 'x.example', pub))).toEqual([true, true]);
    const internal = ['127.0.0.1', '10.1.2.3', '192.168.0.1', '169.254.169.254', '100.64.0.1', '::1', 'fc00::1', 'fe80::1', '::ffff:127.0.0.1', '0.0.0.0', '224.0.0.1'];
    expect(internal.filter((a) => addressAllowed(a, 'x.example', pub))).toEqual([]);
  });

  it('allows listed names, suffixes, addresses and ranges, and nothing else when public is not listed', () => {
    expect(addressAllowed('192.168.9.9', 'a.internal.example', local)).toBe(true);
    expect(addressAllowed('192.168.9.9', 'hooks.slack.com', local)).toBe(true);
    expect(addressAllowed('127.0.0.1', '127.0.0.1', local)).toBe(true);
    expect(addressAllowed('10.9.9.9', 'anything.example', local)).toBe(true);
    expect(addressAllowed('8.8.8.8', 'anything.example', local)).toBe(false);
    expect(() => parseAllowList('10.0.0.0/99')).toThrow('10.0.0.0/99');
    expect(() => parseAllowList('bad host!')).toThrow('bad host!');
  });

  it('checks endpoint URLs: http(s) only, no credentials, a host the list may allow', () => {
    const endpoint = (url: string, list = pub) => validateWebhookEndpoint({ accountId: 'a', endpointId: '', url, description: '', enabled: true, eventTypes: [], format: 0 }, false, list);
    expect(endpoint('https://hooks.example.com/x').url).toBe('https://hooks.example.com/x');
    for (const url of ['ftp://hooks.example.com/', 'file:///etc/passwd', 'https://u:p@hooks.example.com/', 'http://127.0.0.1:9/', 'http://[::1]/', 'http://169.254.169.254/latest', 'not a url', '', `https://x.example/${'a'.repeat(2048)}`]) {
      expect([url, fields(() => endpoint(url))]).toEqual([url, ['endpoint.url']]);
    }
    expect(endpoint('http://127.0.0.1:9/hook', local).url).toBe('http://127.0.0.1:9/hook');
    expect(fields(() => endpoint('https://hooks.example.com/', parseAllowList('hooks.slack.com')))).toEqual(['endpoint.url']);
    expect(fields(() => validateWebhookEndpoint({ accountId: 'a', endpointId: 'x', url: 'https://h.example/', description: '', enabled: true, eventTypes: ['alert.sent'], format: 5 }, true, pub))).toEqual([
      'endpoint.event_types[0]',
      'endpoint.endpoint_id',
      'endpoint.format',
    ]);
  });
});

describe('retry schedule', () => {
  const policy = { baseDelayMs: 1000, maxDelayMs: 10_000, windowMs: 60_000 };

  it('doubles from the base delay up to the maximum, with jitter between half and all of it, reproducible per delivery and attempt', () => {
    for (let attempt = 1; attempt <= 8; attempt++) {
      const full = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
      const delays = ['msg_a', 'msg_b', 'msg_c', 'msg_d'].map((id) => retryDelayMs(policy, attempt, id));
      for (const d of delays) expect(d >= full / 2 && d <= full).toBe(true);
      expect(retryDelayMs(policy, attempt, 'msg_a')).toBe(delays[0]);
    }
    // Jitter spreads deliveries failing together.
    expect(new Set(['msg_a', 'msg_b', 'msg_c', 'msg_d', 'msg_e'].map((id) => retryDelayMs(policy, 3, id))).size).toBeGreaterThan(1);
  });

  it('gives up past the retry window, counted from the delivery (or its redelivery)', () => {
    const start = new Date('2026-12-01T00:00:00Z');
    const failed = new Date(start.getTime() + 59_000);
    const next = nextAttemptTime(policy, 1, 'msg_a', failed, start);
    const delay = retryDelayMs(policy, 1, 'msg_a');
    expect(next?.getTime()).toBe(start.getTime() + 59_000 + delay <= start.getTime() + 60_000 ? failed.getTime() + delay : undefined);
    expect(nextAttemptTime(policy, 1, 'msg_a', new Date(start.getTime() + 60_000), start)).toBeUndefined();
    expect(nextAttemptTime(DEFAULT_RETRY, 1, 'msg_a', start, start)?.getTime()).toBe(start.getTime() + retryDelayMs(DEFAULT_RETRY, 1, 'msg_a'));
  });
});

describe('bodies and signatures', () => {
  it('signs the standard body so that an independent HMAC-SHA256 of id.timestamp.body verifies it, and the library verifies it', () => {
    const secret = `whsec_${Buffer.from('0123456789abcdef01234567').toString('base64')}`;
    const body = webhookBody('alert.triggered', new Date('2026-12-01T10:00:00Z'), { rule_id: 'r1' });
    const at = new Date('2026-12-01T10:00:05Z');
    const signature = new Webhook(secret).sign('msg_1', at, body);
    const ours = createHmac('sha256', Buffer.from(secret.slice(6), 'base64')).update(`msg_1.${Math.floor(at.getTime() / 1000)}.${body}`).digest('base64');
    expect(signature).toBe(`v1,${ours}`);
    expect(JSON.parse(body)).toEqual({ type: 'alert.triggered', timestamp: '2026-12-01T10:00:00.000Z', data: { rule_id: 'r1' } });
  });

  it('makes a Slack incoming-webhook text of an alert', () => {
    const [alert] = alertCrossings([spendRule([5])], [], [counter('', 'day', '2026-12-01', usd(6))], [change('u1', '2026-12-01', 6)]);
    const body = webhookBody('alert.triggered', new Date(), { ...Object.fromEntries(Object.entries({ account_id: 'a', rule_id: 'r1', kind: 'spend', description: 'budget', direction: 'triggered', user_id: '', period: 'day', period_start: '2026-12-01', measure: 'cost', threshold: alert.threshold.toFixed(), used: alert.used?.toFixed(), changed_by_user_id: 'u1' })) });
    expect(JSON.parse(slackBody(body))).toEqual({ text: ':warning: Metering alert (budget): account a reached daily spend of 5 USD: 6 USD used in the day from 2026-12-01.' });
  });
});

describe('delivery listing', () => {
  it('refuses a page token of another query, naming it', () => {
    expect(fields(() => validateListDeliveries({ accountId: 'a', endpointId: 'x', status: 9, pageSize: 5000, pageToken: 'garbage' }))).toEqual(['endpoint_id', 'status', 'page_size', 'page_token']);
  });
});

describe('balance rules', () => {
  const balanceRule = (amounts: string[], ruleId = 'b1'): AlertRule => ({ accountId: 'a', ruleId, description: 'low credits', kind: 'balance', balance: { amounts: amounts.map((x) => new Dec(x)) } });
  const told = (r: ReturnType<typeof balanceAlerts>) => r.alerts.map((a) => [a.direction, a.ruleId, a.threshold.toFixed(), a.available?.toFixed()]);

  it('fires each amount once when the available balance falls below it, and resolves it once when it is back at or above it', () => {
    const rules = [balanceRule(['5', '10'])];
    // 20 -> 4: below both amounts, one alert each.
    const fell = balanceAlerts('a', rules, {}, new Dec(4), 'u1');
    expect(told(fell)).toEqual([['triggered', 'b1', '5', '4'], ['triggered', 'b1', '10', '4']]);
    expect(fell).toMatchObject({ standing: { b1: ['5', '10'] }, changed: true });
    expect(fell.alerts[0]).toMatchObject({ kind: 'balance', userId: '', periodStart: '', measure: 'cost', changedByUserId: 'u1' });
    expect(fell.alerts[0].period).toBeUndefined();
    // Further down: nothing new, nothing to write.
    const lower = balanceAlerts('a', rules, fell.standing, new Dec(1), 'u1');
    expect(lower).toEqual({ alerts: [], standing: { b1: ['5', '10'] }, changed: false });
    // A grant lifts it to exactly 5 (at or above 5, still below 10): 5 resolves once.
    const back = balanceAlerts('a', rules, lower.standing, new Dec(5), '');
    expect(told(back)).toEqual([['resolved', 'b1', '5', '5']]);
    expect(back.standing).toEqual({ b1: ['10'] });
    expect(balanceAlerts('a', rules, back.standing, new Dec(7), '').alerts).toEqual([]);
    const up = balanceAlerts('a', rules, back.standing, new Dec(100), '');
    expect(told(up)).toEqual([['resolved', 'b1', '10', '100']]);
    expect(up).toMatchObject({ standing: {}, changed: true });
  });

  it('fires a rule made while the balance is already below at the next change, and forgets a rule that is gone or an amount no longer in it', () => {
    expect(told(balanceAlerts('a', [balanceRule(['3'])], {}, new Dec(2), '')).map((x) => x[0])).toEqual(['triggered']);
    // The rule was deleted: its standing is dropped without a notice.
    expect(balanceAlerts('a', [], { b1: ['3'] }, new Dec(2), '')).toEqual({ alerts: [], standing: {}, changed: true });
    // The rule changed from 3 to 4: 3 is forgotten, 4 is new and fires.
    const changed = balanceAlerts('a', [balanceRule(['4'])], { b1: ['3'] }, new Dec(2), '');
    expect(told(changed)).toEqual([['triggered', 'b1', '4', '2']]);
    expect(changed.standing).toEqual({ b1: ['4'] });
    // Another account's rule and other kinds are not measured here.
    expect(balanceAlerts('a', [{ ...balanceRule(['9']), accountId: 'other' }, spendRule([9])], {}, new Dec(1), '').alerts).toEqual([]);
  });

  it('is never resolved by the end of a period, and its rules never make the counters\' second statement', () => {
    const [alert] = balanceAlerts('a', [balanceRule(['3'])], {}, new Dec(2), '').alerts;
    expect(periodEnded(alert, new Date('2099-01-01T00:00:00Z'), 'UTC')).toBe(false);
    const charge = { accountId: 'a', userId: 'u1', usageDate: '2026-12-01', costs: { totalCost: '6' }, tokens: tokenCounts({ promptTokens: 1 }), totalTokens: 1, callCount: 0 };
    const entries = entriesOf([{ kind: 'charge_recorded', charge: charge as never }]);
    expect(eventsAfterWrite([{ softLimits: [], alertRules: [balanceRule(['3'])], ruleLimits: [] }], entries)).toBeUndefined();
  });

  it('validates: amounts above 0, USD, at most 20, exactly the balance target', () => {
    const rule = validateAlertRule({ accountId: 'a', ruleId: '', description: 'd', kind: 3, balance: { amounts: [{ amount: '10', currencyCode: 'USD' }, { amount: '2.5', currencyCode: 'USD' }] } }, false);
    expect(rule).toMatchObject({ kind: 'balance', balance: { amounts: [new Dec('2.5'), new Dec('10')] } });
    expect(fields(() => validateAlertRule({ accountId: 'a', ruleId: '', description: '', kind: 3 }, false))).toEqual(['rule.balance']);
    expect(
      fields(() => validateAlertRule({ accountId: 'a', ruleId: '', description: '', kind: 3, balance: { amounts: [{ amount: '0', currencyCode: 'USD' }, { amount: '-1', currencyCode: 'USD' }, { amount: '1', currencyCode: 'EUR' }, { amount: 'x', currencyCode: 'USD' }] } }, false)),
    ).toEqual(['rule.balance.amounts[2].currency_code', 'rule.balance.amounts[0].amount', 'rule.balance.amounts[1].amount', 'rule.balance.amounts[3].amount']);
    expect(fields(() => validateAlertRule({ accountId: 'a', ruleId: '', description: '', kind: 3, balance: { amounts: [] } }, false))).toEqual(['rule.balance.amounts']);
    expect(
      fields(() => validateAlertRule({ accountId: 'a', ruleId: '', description: '', kind: 2, spend: { period: 1, userId: '', eachUser: false, amounts: [{ amount: '1', currencyCode: 'USD' }] }, balance: { amounts: [{ amount: '1', currencyCode: 'USD' }] } }, false)),
    ).toEqual(['rule.balance']);
  });

  it('makes the webhook data and a Slack text of a balance alert', () => {
    const [alert] = balanceAlerts('a', [balanceRule(['10'])], {}, new Dec('7.5'), 'u1').alerts;
    const data = alertData(alert);
    expect(data).toEqual({ account_id: 'a', rule_id: 'b1', kind: 'balance', description: 'low credits', direction: 'triggered', user_id: '', measure: 'cost', threshold: '10', available: '7.5', changed_by_user_id: 'u1' });
    expect(JSON.parse(slackBody(webhookBody('alert.triggered', new Date(), data)))).toEqual({ text: ':warning: Metering alert (low credits): the available credit balance of account a fell below 10 USD: 7.5 USD available.' });
    const back = alertData(balanceAlerts('a', [balanceRule(['10'])], { b1: ['10'] }, new Dec('12'), '').alerts[0]);
    expect(JSON.parse(slackBody(webhookBody('alert.resolved', new Date(), back)))).toEqual({ text: ':white_check_mark: Metering alert (low credits): the available credit balance of account a is back at or above 10 USD: 12 USD available.' });
  });
});
