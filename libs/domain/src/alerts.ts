import { CURRENCY_CODE, Dec, formatDecimal, parseDecimal } from '@metering/pricing';
import ipaddr from 'ipaddr.js';
import { DomainError, NotFoundError } from './errors';
import { type CounterState, type LedgerEntries, type LedgerEvent, softLimitEvents } from './ledger';
import { Limit, LIMIT_ENFORCEMENT_BY_NUMBER, LIMIT_MEASURE_BY_NUMBER, LIMIT_PERIOD_BY_NUMBER, LimitEnforcement, LimitMeasure, LimitPeriod, MoneyInput, periodStartOf, UsageChange, UsageCounter } from './limits';
import { DEFAULT_TIME_ZONE, localDay } from './time';
import { decodePageToken, encodePageToken, stringTuple } from './page-token';
import { checkEnum, checkId, checkInt, checkText, Violations } from './validation';

/**
 * Alerts: rules with thresholds on recorded usage, evaluated in the
 * transaction of the change that moves the usage (from the counters as they
 * are after the write, like soft limits: `alertEvents`), and the rules of
 * their delivery by webhooks (the retry schedule, the destination
 * allow-list, the bodies). No I/O.
 *
 * A rule has a kind; each kind says which counter rows it measures and its
 * thresholds in the measure's unit (`thresholdsOf`). A threshold T is
 * crossed upward when usage before the change was below T and after it is at
 * or above T (triggered), and back when it was at or above and is now below
 * (resolved). Counter rows are locked by the write (usage_counters, in key
 * order), so concurrent writers see each other's usage in turn and each
 * crossing is seen by exactly one transaction, on any number of replicas.
 * A new period has its own counters, starting at zero: thresholds fire again
 * in it.
 *
 * A BALANCE rule watches the account's available prepaid-credit balance
 * (libs/domain/src/credits.ts): it is evaluated where credits move
 * (creditWritesOf, `balanceAlerts`), against what the account's locked credit
 * row says stands below (no period: the balance is not per day or month).
 */

export type AlertRuleKind = 'limit' | 'spend' | 'balance';
export type AlertDirection = 'triggered' | 'resolved';

export const ALERT_RULE_KIND_BY_NUMBER: Record<number, AlertRuleKind> = { 1: 'limit', 2: 'spend', 3: 'balance' };

/** At most this many rules per account, thresholds per rule, and endpoints per account. */
export const MAX_ALERT_RULES = 100;
export const MAX_THRESHOLDS = 20;
export const MAX_WEBHOOK_ENDPOINTS = 20;
export const MAX_URL_LENGTH = 2048;
export const MAX_PERCENTAGE = new Dec(1000);
const MAX_SPEND = new Dec('1000000000000');

/** Thresholds as percentages of one limit's amount (the limit named by its key; idle while it is not set). */
export interface LimitAlertTarget {
  userId: string;
  period: LimitPeriod;
  measure: LimitMeasure;
  enforcement: LimitEnforcement;
  percentages: Dec[];
}

/** Thresholds of recorded spend (USD) in the current period: of one user, of the account, or of each user. */
export interface SpendAlertTarget {
  period: LimitPeriod;
  userId: string;
  eachUser: boolean;
  amounts: Dec[];
}

/** Thresholds (USD) of the account's available credit balance: each fires when the balance falls below it. */
export interface BalanceAlertTarget {
  amounts: Dec[];
}

export interface AlertRule {
  accountId: string;
  ruleId: string;
  description: string;
  kind: AlertRuleKind;
  limit?: LimitAlertTarget;
  spend?: SpendAlertTarget;
  balance?: BalanceAlertTarget;
  createTime?: Date;
  updateTime?: Date;
}

/** One threshold crossed by one change. */
export interface Alert {
  accountId: string;
  ruleId: string;
  kind: AlertRuleKind;
  description: string;
  direction: AlertDirection;
  /** Whose usage is measured ('' = the account's). */
  userId: string;
  /** The period of the usage; none for a BALANCE alert (periodStart is then ''). */
  period?: LimitPeriod;
  periodStart: string;
  measure: LimitMeasure;
  threshold: Dec;
  percentage?: Dec;
  limitAmount?: Dec;
  /** Recorded usage of the period after the change; none for a BALANCE alert. */
  used?: Dec;
  /** A BALANCE alert: the available balance after the change. */
  available?: Dec;
  /** The user whose change crossed it. */
  changedByUserId: string;
  /** A resolved notice sent because the period ended (usage did not fall): see `periodEndNotices`. */
  periodEnded?: boolean;
}

// ---- Validation ----

export interface AlertRuleInput {
  accountId: string;
  ruleId: string;
  description: string;
  kind: number;
  limit?: { userId: string; period: number; measure: number; enforcement: number; percentages: string[] };
  spend?: { period: number; userId: string; eachUser: boolean; amounts: MoneyInput[] };
  balance?: { amounts: MoneyInput[] };
}

function checkThresholds(v: Violations, field: string, raw: string[], max: Dec, what: string): Dec[] {
  if (raw.length === 0) v.add(field, 'needs at least one threshold');
  if (raw.length > MAX_THRESHOLDS) {
    v.add(field, `at most ${MAX_THRESHOLDS} thresholds`);
    return [];
  }
  const out: Dec[] = [];
  raw.forEach((text, n) => {
    const d = parseDecimal(text ?? '', 40);
    if (d === undefined) v.add(`${field}[${n}]`, `must be a plain decimal string such as "80" (${what})`);
    else if (!d.greaterThan(0) || d.greaterThan(max)) v.add(`${field}[${n}]`, `must be greater than 0 and at most ${formatDecimal(max)}`);
    else if (out.some((o) => o.equals(d))) v.add(`${field}[${n}]`, 'repeats a threshold');
    else out.push(d);
  });
  return out.sort((a, b) => a.comparedTo(b));
}

const requiredEnum = <T extends string>(v: Violations, field: string, value: number, names: Record<number, T>): T | undefined => {
  if (!value) v.add(field, `is required (${Object.values(names).join(', ')})`);
  return checkEnum(v, field, value ?? 0, names);
};

/** Validates a rule to create (`existing` false: rule_id is assigned) or to update (rule_id required). */
export function validateAlertRule(raw: AlertRuleInput | undefined, update: boolean): Omit<AlertRule, 'ruleId'> & { ruleId: string } {
  const v = new Violations();
  if (!raw) {
    v.add('rule', 'is required');
    v.done();
  }
  const r = raw as AlertRuleInput;
  const rule: AlertRule = {
    accountId: checkId(v, 'rule.account_id', r.accountId ?? ''),
    ruleId: update ? checkUuid(v, 'rule.rule_id', r.ruleId ?? '') : '',
    description: checkText(v, 'rule.description', r.description ?? '', 255),
    kind: 'spend',
  };
  const kind = requiredEnum(v, 'rule.kind', r.kind, ALERT_RULE_KIND_BY_NUMBER);
  if (kind) rule.kind = kind;
  // Each target given is checked, whatever the kind (a bad kind and a bad target are both named).
  if (r.limit) {
    rule.limit = {
      userId: checkId(v, 'rule.limit.user_id', r.limit.userId ?? '', false),
      period: requiredEnum(v, 'rule.limit.period', r.limit.period, LIMIT_PERIOD_BY_NUMBER) ?? 'day',
      measure: requiredEnum(v, 'rule.limit.measure', r.limit.measure, LIMIT_MEASURE_BY_NUMBER) ?? 'cost',
      enforcement: checkEnum(v, 'rule.limit.enforcement', r.limit.enforcement ?? 0, LIMIT_ENFORCEMENT_BY_NUMBER) ?? 'hard',
      percentages: checkThresholds(v, 'rule.limit.percentages', r.limit.percentages ?? [], MAX_PERCENTAGE, 'a percentage'),
    };
  }
  if (r.spend) {
    const amounts = r.spend.amounts ?? [];
    amounts.forEach((m, n) => m.currencyCode !== CURRENCY_CODE && v.add(`rule.spend.amounts[${n}].currency_code`, `must be "${CURRENCY_CODE}"`));
    const userId = checkId(v, 'rule.spend.user_id', r.spend.userId ?? '', false);
    if (r.spend.eachUser && userId !== '') v.add('rule.spend.each_user', 'is only used without user_id');
    const before = v.list.length;
    rule.spend = {
      period: requiredEnum(v, 'rule.spend.period', r.spend.period, LIMIT_PERIOD_BY_NUMBER) ?? 'day',
      userId,
      eachUser: r.spend.eachUser === true,
      amounts: checkThresholds(v, 'rule.spend.amounts', amounts.map((m) => m.amount), MAX_SPEND, 'USD'),
    };
    // A threshold's violation names its Money's amount.
    for (const x of v.list.slice(before)) if (/^rule\.spend\.amounts\[\d+\]$/.test(x.field)) x.field += '.amount';
  }
  if (r.balance) {
    const amounts = r.balance.amounts ?? [];
    amounts.forEach((m, n) => m.currencyCode !== CURRENCY_CODE && v.add(`rule.balance.amounts[${n}].currency_code`, `must be "${CURRENCY_CODE}"`));
    const before = v.list.length;
    rule.balance = { amounts: checkThresholds(v, 'rule.balance.amounts', amounts.map((m) => m.amount), MAX_SPEND, 'USD') };
    for (const x of v.list.slice(before)) if (/^rule\.balance\.amounts\[\d+\]$/.test(x.field)) x.field += '.amount';
  }
  // Exactly the target of its kind.
  const targets = { limit: r.limit, spend: r.spend, balance: r.balance };
  if (kind) {
    if (!targets[kind]) v.add(`rule.${kind}`, `is required for kind ${kind.toUpperCase()}`);
    for (const other of ['limit', 'spend', 'balance'] as const) if (other !== kind && targets[other]) v.add(`rule.${other}`, `is only used with kind ${other.toUpperCase()}`);
  }
  v.done();
  return rule;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export function checkUuid(v: Violations, field: string, value: string): string {
  if (value === '') v.add(field, 'is required');
  else if (!UUID.test(value)) v.add(field, 'must be an id returned by the server (a UUID)');
  return value;
}

/** An (account, id) pair of a request naming one rule or endpoint. */
export function validateRef(raw: { accountId: string; id: string }, field: string): { accountId: string; id: string } {
  const v = new Violations();
  const ref = { accountId: checkId(v, 'account_id', raw.accountId ?? ''), id: checkUuid(v, field, raw.id ?? '') };
  v.done();
  return ref;
}

export class AlertRuleNotFoundError extends NotFoundError {
  constructor(ruleId: string) {
    super('ALERT_RULE_NOT_FOUND', `the account has no alert rule ${ruleId}`);
  }
}

export class WebhookEndpointNotFoundError extends NotFoundError {
  constructor(endpointId: string) {
    super('WEBHOOK_ENDPOINT_NOT_FOUND', `the account has no webhook endpoint ${endpointId}`);
  }
}

export class DeliveryNotFoundError extends NotFoundError {
  constructor(deliveryId: string) {
    super('DELIVERY_NOT_FOUND', `the account has no delivery ${deliveryId}`);
  }
}

/** Too many rules or endpoints for one account. */
export class TooManyError extends DomainError {
  constructor(what: string, max: number) {
    super('RESOURCE_EXHAUSTED', 'TOO_MANY', `an account has at most ${max} ${what}`, { max: String(max) });
  }
}

// ---- Crossings ----

/** A counter's recorded usage in a measure's unit (zero when there is no counter). */
export const usedOf = (measure: LimitMeasure, u: UsageCounter | undefined): Dec => (u ? amountOf(measure, u) : new Dec(0));

const amountOf = (measure: LimitMeasure, u: UsageCounter): Dec =>
  measure === 'messages' ? new Dec(u.messageCount.toString()) : measure === 'tokens' ? new Dec(u.totalTokens.toString()) : u.totalCost;

const minus = (a: UsageCounter, b: UsageCounter): UsageCounter => ({
  messageCount: a.messageCount - b.messageCount,
  totalTokens: a.totalTokens - b.totalTokens,
  totalCost: a.totalCost.minus(b.totalCost),
});

/** What one rule measures: which counter rows, in which measure, against which thresholds. */
interface Measured {
  period: LimitPeriod;
  measure: LimitMeasure;
  /** Whether a counter row (a scope: '' = the account) is one the rule measures. */
  scope: (userId: string) => boolean;
  thresholds: Array<{ threshold: Dec; percentage?: Dec; limitAmount?: Dec }>;
}

/** A rule's thresholds in its measure's unit, against the limits now set (a LIMIT rule without its limit measures nothing). */
export function measuredBy(rule: AlertRule, limits: Limit[]): Measured | undefined {
  if (rule.kind === 'limit' && rule.limit) {
    const t = rule.limit;
    const limit = limits.find((l) => l.accountId === rule.accountId && l.userId === t.userId && !l.scope && l.period === t.period && l.measure === t.measure && l.enforcement === t.enforcement);
    if (!limit) return undefined;
    return {
      period: t.period,
      measure: t.measure,
      scope: (u) => u === t.userId,
      thresholds: t.percentages.map((p) => ({ threshold: limit.amount.times(p).dividedBy(100), percentage: p, limitAmount: limit.amount })),
    };
  }
  if (rule.kind === 'spend' && rule.spend) {
    const t = rule.spend;
    return { period: t.period, measure: 'cost', scope: (u) => (t.eachUser ? u !== '' : u === t.userId), thresholds: t.amounts.map((a) => ({ threshold: a })) };
  }
  return undefined;
}

/**
 * The thresholds that changes just crossed, either way: for each rule and
 * each counter row it measures that the changes moved (rows as they are after
 * the changes), usage before = after - the changes' own amounts. Recorded
 * usage only (reservations are not spend). In rule order, then row key order,
 * then threshold order.
 */
export function alertCrossings(rules: AlertRule[], limits: Limit[], counters: CounterState[], changes: UsageChange[]): Alert[] {
  const out: Alert[] = [];
  if (rules.length === 0 || changes.length === 0) return out;
  for (const rule of rules) {
    const m = measuredBy(rule, limits);
    if (!m) continue;
    for (const row of counters) {
      // Rules measure the account and its users; the API key and tag counters (row.scope) are not theirs.
      if (row.accountId !== rule.accountId || row.scope || row.period !== m.period || !m.scope(row.userId)) continue;
      const mine = changes.filter((c) => c.accountId === row.accountId && (row.userId === '' || c.userId === row.userId) && periodStartOf(m.period, c.usageDate) === row.periodStart);
      if (mine.length === 0) continue;
      const before = amountOf(m.measure, mine.reduce((u, c) => minus(u, c.used), row.used));
      const after = amountOf(m.measure, row.used);
      for (const t of m.thresholds) {
        const direction: AlertDirection | undefined =
          before.lessThan(t.threshold) && after.greaterThanOrEqualTo(t.threshold) ? 'triggered' : before.greaterThanOrEqualTo(t.threshold) && after.lessThan(t.threshold) ? 'resolved' : undefined;
        if (!direction) continue;
        out.push({
          accountId: rule.accountId,
          ruleId: rule.ruleId,
          kind: rule.kind,
          description: rule.description,
          direction,
          userId: row.userId,
          period: m.period,
          periodStart: row.periodStart,
          measure: m.measure,
          ...t,
          used: after,
          changedByUserId: mine[mine.length - 1].userId,
        });
      }
    }
  }
  return out;
}

/** The alert events of applied entries (the outbox events of the crossings; each also queues a delivery to every endpoint that takes it). */
export function alertEvents(rules: AlertRule[], limits: Limit[], counters: CounterState[], entries: LedgerEntries): LedgerEvent[] {
  if (rules.length === 0 || entries.usage.length === 0) return [];
  return alertCrossings(rules, limits, counters, entries.usage).map((alert) => ({ kind: alert.direction === 'triggered' ? 'alert_triggered' : 'alert_resolved', alert }) as LedgerEvent);
}

/**
 * What a write derives from the counters after it, for the accounts it wrote
 * for (their settings): soft limits crossed, then alert thresholds crossed.
 * Undefined when no account has either: the write then needs no second
 * statement (docs/architecture.md, the round-trip guard).
 */
export function eventsAfterWrite(
  settings: Iterable<{ softLimits: Limit[]; alertRules?: AlertRule[]; ruleLimits?: Limit[] }>,
  entries: LedgerEntries,
  ended: (a: Alert) => boolean = () => false,
): ((counters: CounterState[]) => LedgerEvent[]) | undefined {
  const all = [...settings];
  const soft = all.flatMap((s) => s.softLimits);
  // BALANCE rules are evaluated with the credits (creditWritesOf), not from the counters.
  const rules = all.flatMap((s) => s.alertRules ?? []).filter((r) => r.kind !== 'balance');
  const limits = all.flatMap((s) => s.ruleLimits ?? []);
  if (soft.length === 0 && rules.length === 0) return undefined;
  // A period that has ended gets its one resolved notice from the period-end sweep (with its final usage), not from a late change.
  const told = (e: LedgerEvent) => !(e.kind === 'alert_resolved' && ended(e.alert));
  return (counters) => [...softLimitEvents(soft, counters, entries), ...alertEvents(rules, limits, counters, entries).filter(told)];
}

/**
 * What stands of an account's BALANCE rules: rule id -> the amounts (decimal
 * strings, ascending) the available balance was last found below and has not
 * been told to be back above since. Kept on the account's credit row, which
 * every transaction that moves its credits has locked, so each crossing is
 * seen by exactly one transaction, on any number of replicas.
 */
export type StandingBelow = Record<string, string[]>;

/**
 * The BALANCE rules of one account evaluated on its available balance after
 * a change: an amount the balance is now below that does not stand fires
 * `triggered` (and stands); one that stands while the balance is at or above
 * it fires `resolved`. So each threshold fires once when the balance falls
 * below it and once when it is back, however many changes it takes and
 * whatever moved it (a charge, a hold, an expiry, a grant, a refund, a
 * void); a rule created or changed while the balance is already below an
 * amount fires at the account's next credit change. What stands afterwards
 * keeps only the rules given (a deleted rule's is dropped). In rule order,
 * then amount order.
 */
export function balanceAlerts(
  accountId: string,
  rules: AlertRule[],
  standing: StandingBelow,
  available: Dec,
  changedByUserId: string,
): { alerts: Alert[]; standing: StandingBelow; changed: boolean } {
  const alerts: Alert[] = [];
  const now: StandingBelow = {};
  for (const rule of rules) {
    if (rule.kind !== 'balance' || !rule.balance || rule.accountId !== accountId) continue;
    const was = new Set(standing[rule.ruleId] ?? []);
    const below: string[] = [];
    for (const amount of rule.balance.amounts) {
      const key = formatDecimal(amount);
      const isBelow = available.lessThan(amount);
      if (isBelow) below.push(key);
      if (isBelow === was.has(key)) continue;
      alerts.push({
        accountId,
        ruleId: rule.ruleId,
        kind: 'balance',
        description: rule.description,
        direction: isBelow ? 'triggered' : 'resolved',
        userId: '',
        periodStart: '',
        measure: 'cost',
        threshold: amount,
        available,
        changedByUserId,
      });
    }
    if (below.length) now[rule.ruleId] = below;
  }
  const canon = (x: StandingBelow) => JSON.stringify(Object.keys(x).sort().map((k) => [k, x[k]]));
  return { alerts, standing: now, changed: canon(now) !== canon(standing) };
}

/** Whether an alert's period has ended, for the accounts of a write (their time zones; UTC when unset). */
export const endedAt =
  (now: Date, zoneOf: (accountId: string) => string | undefined) =>
  (a: Alert): boolean =>
    periodEnded(a, now, zoneOf(a.accountId) ?? DEFAULT_TIME_ZONE);

// ---- Periods that ended ----

// A threshold that stands triggered is kept by the store (one row per triggered alert, dropped
// when it resolves), so that when its period ends the account is told once that it is behind it.

const SEP = '\u0000';
/** The key of a standing alert: one per rule, measured scope, period and threshold. */
export const standingKey = (a: Alert) => [a.accountId, a.ruleId, a.userId, a.period, a.periodStart, formatDecimal(a.threshold)].join(SEP);

/** Whether a standing alert's period is over in its account's time zone at `now`. */
export function periodEnded(a: Alert, now: Date, timeZone: string): boolean {
  // A BALANCE alert has no period: it stands until the balance is back.
  return a.period !== undefined && a.periodStart < periodStartOf(a.period, localDay(now, timeZone));
}

/**
 * The resolved notices of standing alerts whose period ended: the same
 * threshold, with the period's final usage (`used` of its counter, by scope
 * and period), marked periodEnded.
 */
export function periodEndNotices(standing: Alert[], finalUsed: (a: Alert) => Dec): Alert[] {
  return standing.map((a) => ({ ...a, direction: 'resolved', used: finalUsed(a), periodEnded: true }));
}

// ---- Webhook endpoints ----

export type WebhookFormat = 'standard' | 'slack';
export const WEBHOOK_FORMAT_BY_NUMBER: Record<number, WebhookFormat> = { 1: 'standard', 2: 'slack' };
export const EVENT_TYPES = ['alert.triggered', 'alert.resolved'] as const;
export const TEST_EVENT_TYPE = 'webhook.test';
export type WebhookEventType = (typeof EVENT_TYPES)[number] | typeof TEST_EVENT_TYPE;

export interface WebhookEndpoint {
  accountId: string;
  endpointId: string;
  url: string;
  description: string;
  enabled: boolean;
  eventTypes: string[];
  format: WebhookFormat;
  /** Only when just created or rotated. */
  secret?: string;
  disabledReason: string;
  createTime?: Date;
  updateTime?: Date;
}

export interface WebhookEndpointInput {
  accountId: string;
  endpointId: string;
  url: string;
  description: string;
  enabled: boolean;
  eventTypes: string[];
  format: number;
}

/** Validates an endpoint to create or update: the URL against the destination allow-list. */
export function validateWebhookEndpoint(raw: WebhookEndpointInput | undefined, update: boolean, allow: AllowList): Omit<WebhookEndpoint, 'disabledReason'> {
  const v = new Violations();
  if (!raw) {
    v.add('endpoint', 'is required');
    v.done();
  }
  const r = raw as WebhookEndpointInput;
  const types = r.eventTypes ?? [];
  if (types.length > EVENT_TYPES.length) v.add('endpoint.event_types', `at most ${EVENT_TYPES.length} values`);
  else types.forEach((t, n) => !(EVENT_TYPES as readonly string[]).includes(t) && v.add(`endpoint.event_types[${n}]`, `must be one of ${EVENT_TYPES.join(', ')}`));
  const endpoint = {
    accountId: checkId(v, 'endpoint.account_id', r.accountId ?? ''),
    endpointId: update ? checkUuid(v, 'endpoint.endpoint_id', r.endpointId ?? '') : '',
    url: checkWebhookUrl(v, 'endpoint.url', r.url ?? '', allow),
    description: checkText(v, 'endpoint.description', r.description ?? '', 255),
    enabled: r.enabled === true,
    eventTypes: [...new Set(types)].sort(),
    format: checkEnum(v, 'endpoint.format', r.format ?? 0, WEBHOOK_FORMAT_BY_NUMBER) ?? 'standard',
  };
  v.done();
  return endpoint;
}

/** Whether an endpoint takes an event type (a test event: always). */
export const endpointTakes = (e: Pick<WebhookEndpoint, 'eventTypes'>, type: string) => type === TEST_EVENT_TYPE || e.eventTypes.length === 0 || e.eventTypes.includes(type);

// ---- Destinations ----

/**
 * Where webhooks may be posted (METERING_WEBHOOK_ALLOWED_HOSTS, comma
 * separated): `public` (any host whose addresses are all public unicast
 * addresses: not loopback, private, link-local, carrier-grade NAT, unique
 * local, multicast, reserved...), host names (`hooks.slack.com`), suffixes
 * (`*.example.com`), addresses and CIDR ranges (`127.0.0.1`, `10.1.0.0/16`).
 * A host named (or matched by a suffix) may resolve to any address; any other
 * host must resolve only to addresses in a listed range (or public ones, with
 * `public`). The default is `public`.
 */
export interface AllowList {
  public: boolean;
  names: string[];
  suffixes: string[];
  ranges: Array<[ipaddr.IPv4 | ipaddr.IPv6, number]>;
  /** As given, for messages. */
  text: string;
}

export const DEFAULT_ALLOWED_HOSTS = 'public';

/** Parses an allow-list; throws naming the bad entry. */
export function parseAllowList(raw: string): AllowList {
  const list: AllowList = { public: false, names: [], suffixes: [], ranges: [], text: raw.trim() || DEFAULT_ALLOWED_HOSTS };
  for (const entry of list.text.split(',').map((e) => e.trim().toLowerCase()).filter(Boolean)) {
    if (entry === 'public') list.public = true;
    else if (entry.includes('/')) {
      try {
        list.ranges.push(ipaddr.parseCIDR(entry));
      } catch {
        throw new Error(`"${entry}" is not a CIDR range`);
      }
    } else if (ipaddr.isValid(entry.replace(/^\[|\]$/g, ''))) {
      const a = ipaddr.process(entry.replace(/^\[|\]$/g, ''));
      list.ranges.push([a, a.kind() === 'ipv4' ? 32 : 128]);
    } else if (entry.startsWith('*.') && HOSTNAME.test(entry.slice(2))) list.suffixes.push(entry.slice(1));
    else if (HOSTNAME.test(entry)) list.names.push(entry);
    else throw new Error(`"${entry}" is not public, a host name, *.suffix, an address or a CIDR range`);
  }
  return list;
}

const HOSTNAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** Whether a host is allowed by its name alone (then any of its addresses is). */
export function nameAllowed(host: string, list: AllowList): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return list.names.includes(h) || list.suffixes.some((s) => h.endsWith(s));
}

/** Whether an address (as resolved, or an address literal) may be connected to, for a host. */
export function addressAllowed(address: string, host: string, list: AllowList): boolean {
  if (nameAllowed(host, list)) return true;
  if (!ipaddr.isValid(address)) return false;
  const a = ipaddr.process(address);
  if (list.ranges.some(([net, bits]) => net.kind() === a.kind() && a.match(net, bits))) return true;
  return list.public && a.range() === 'unicast';
}

/** A webhook URL: http or https, no credentials, at most MAX_URL_LENGTH, its host possibly allowed (addresses are checked again when connecting). */
export function checkWebhookUrl(v: Violations, field: string, raw: string, list: AllowList): string {
  if (raw === '') {
    v.add(field, 'is required');
    return raw;
  }
  if (raw.length > MAX_URL_LENGTH) {
    v.add(field, `must be at most ${MAX_URL_LENGTH} characters`);
    return raw;
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    v.add(field, 'must be an absolute http or https URL');
    return raw;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') v.add(field, 'must be an http or https URL');
  else if (url.username || url.password) v.add(field, 'must not carry a user name or password');
  else if (url.hash) v.add(field, 'must not have a #fragment');
  else {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const literal = ipaddr.isValid(host);
    const possible = literal ? addressAllowed(host, host, list) : nameAllowed(host, list) || list.public || list.ranges.length > 0;
    if (!possible) v.add(field, `the host "${host}" is not allowed by the server's destination allow-list (${list.text})`);
  }
  return url.toString();
}

// ---- Retries ----

export interface RetryPolicy {
  /** The delay after the first failed attempt, in ms; it doubles after each further one... */
  baseDelayMs: number;
  /** ...up to this. */
  maxDelayMs: number;
  /** No attempt starts later than this after the delivery was created (or redelivered), in ms. */
  windowMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { baseDelayMs: 5_000, maxDelayMs: 3_600_000, windowMs: 86_400_000 };

/** A number in [0, 1) from a text (FNV-1a, 32 bits): the jitter of one attempt, the same wherever it is computed. */
function unitHash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h / 2 ** 32;
}

/**
 * The delay after failed attempt `attempt` (1, 2, ...) of a delivery:
 * exponential (base * 2^(attempt-1), at most max), with jitter: between half
 * and all of it, by a hash of the delivery id and the attempt, so retries of
 * many deliveries spread out while each delivery's schedule is reproducible.
 */
export function retryDelayMs(policy: RetryPolicy, attempt: number, deliveryId: string): number {
  const exp = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(attempt - 1, 40));
  return Math.round(exp * (0.5 + unitHash(`${deliveryId}:${attempt}`) / 2));
}

/** When the attempt after a failed one is due, or undefined when that is past the retry window (the delivery has failed). */
export function nextAttemptTime(policy: RetryPolicy, attempt: number, deliveryId: string, failedAt: Date, windowStart: Date): Date | undefined {
  const next = new Date(failedAt.getTime() + retryDelayMs(policy, attempt, deliveryId));
  return next.getTime() - windowStart.getTime() > policy.windowMs ? undefined : next;
}

// ---- Bodies ----

/** The JSON of an alert in a webhook body (snake_case, amounts as decimal strings). */
export function alertData(a: Alert): Record<string, string> {
  return {
    account_id: a.accountId,
    rule_id: a.ruleId,
    kind: a.kind,
    description: a.description,
    direction: a.direction,
    user_id: a.userId,
    ...(a.period ? { period: a.period, period_start: a.periodStart } : {}),
    measure: a.measure,
    threshold: formatDecimal(a.threshold),
    ...(a.percentage ? { percentage: formatDecimal(a.percentage) } : {}),
    ...(a.limitAmount ? { limit_amount: formatDecimal(a.limitAmount) } : {}),
    ...(a.used ? { used: formatDecimal(a.used) } : {}),
    ...(a.available ? { available: formatDecimal(a.available) } : {}),
    changed_by_user_id: a.changedByUserId,
    ...(a.periodEnded ? { period_ended: 'true' } : {}),
  };
}

/** The standard body: {"type", "timestamp", "data"}, as the Standard Webhooks specification recommends. */
export function webhookBody(type: WebhookEventType, timestamp: Date, data: Record<string, unknown>): string {
  return JSON.stringify({ type, timestamp: timestamp.toISOString(), data });
}

const unitOf = (measure: string, amount: string) => (measure === 'cost' ? `${amount} ${CURRENCY_CODE}` : `${amount} ${measure}`);

/** A Slack incoming-webhook body for a standard body (a text line: what crossed what). */
export function slackBody(standard: string): string {
  const body = JSON.parse(standard) as { type: string; data: Record<string, string> };
  const d = body.data;
  if (body.type === TEST_EVENT_TYPE) return JSON.stringify({ text: `Metering test event for account ${d.account_id}: this endpoint receives alerts.` });
  const label = d.description ? ` (${d.description})` : '';
  if (d.kind === 'balance') {
    const moved = d.direction === 'triggered' ? `fell below ${unitOf('cost', d.threshold)}` : `is back at or above ${unitOf('cost', d.threshold)}`;
    const icon = d.direction === 'triggered' ? ':warning:' : ':white_check_mark:';
    return JSON.stringify({ text: `${icon} Metering alert${label}: the available credit balance of account ${d.account_id} ${moved}: ${unitOf('cost', d.available)} available.` });
  }
  const who = d.user_id ? `user ${d.user_id} of account ${d.account_id}` : `account ${d.account_id}`;
  const ended = d.period_ended === 'true';
  const what = d.kind === 'limit' ? `${d.percentage}% of the ${d.period === 'day' ? 'daily' : 'monthly'} ${d.measure} limit (${unitOf(d.measure, d.limit_amount)})` : `${d.period === 'day' ? 'daily' : 'monthly'} spend of ${unitOf('cost', d.threshold)}`;
  const verb = d.direction === 'triggered' ? 'reached' : 'is back below';
  const icon = d.direction === 'triggered' ? ':warning:' : ':white_check_mark:';
  if (ended) return JSON.stringify({ text: `${icon} Metering alert${label}: the ${d.period} from ${d.period_start} of ${who} is over (${unitOf(d.measure, d.used)} used), resolving ${what}.` });
  return JSON.stringify({ text: `${icon} Metering alert${label}: ${who} ${verb} ${what}: ${unitOf(d.measure, d.used)} used in the ${d.period} from ${d.period_start}.` });
}

// ---- Deliveries ----

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';
export const DELIVERY_STATUS_BY_NUMBER: Record<number, DeliveryStatus> = { 1: 'pending', 2: 'delivered', 3: 'failed' };

export interface Delivery {
  accountId: string;
  deliveryId: string;
  endpointId: string;
  eventType: string;
  status: DeliveryStatus;
  attemptCount: number;
  createTime: Date;
  nextAttemptTime?: Date;
  payload: string;
}

export interface DeliveryAttempt {
  deliveryId: string;
  attempt: number;
  startTime: Date;
  latencyMs: number;
  httpStatus: number;
  error: string;
  responseExcerpt: string;
  success: boolean;
  nextAttemptTime?: Date;
}

const DELIVERY_ID = /^msg_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function validateDeliveryRef(raw: { accountId: string; deliveryId: string }): { accountId: string; deliveryId: string } {
  const v = new Violations();
  const ref = { accountId: checkId(v, 'account_id', raw.accountId ?? ''), deliveryId: raw.deliveryId ?? '' };
  if (ref.deliveryId === '') v.add('delivery_id', 'is required');
  else if (!DELIVERY_ID.test(ref.deliveryId)) v.add('delivery_id', 'must be a delivery id returned by the server ("msg_" and a UUID)');
  v.done();
  return ref;
}

export interface ListDeliveriesQuery {
  accountId: string;
  endpointId?: string;
  status?: DeliveryStatus;
  pageSize: number;
  /** After this (create time, delivery id), newest first. */
  after?: { createTime: Date; deliveryId: string };
}

const deliveryListFilters = (q: Pick<ListDeliveriesQuery, 'accountId' | 'endpointId' | 'status'>) => [q.accountId, q.endpointId ?? '', q.status ?? ''];

export function encodeDeliveryPageToken(q: ListDeliveriesQuery, last: Delivery): string {
  return encodePageToken(deliveryListFilters(q), [last.createTime.toISOString(), last.deliveryId]);
}

export function validateListDeliveries(raw: { accountId: string; endpointId: string; status: number; pageSize: number; pageToken: string }): ListDeliveriesQuery {
  const v = new Violations();
  const q: ListDeliveriesQuery = {
    accountId: checkId(v, 'account_id', raw.accountId ?? ''),
    endpointId: raw.endpointId ? checkUuid(v, 'endpoint_id', raw.endpointId) : undefined,
    status: checkEnum(v, 'status', raw.status ?? 0, DELIVERY_STATUS_BY_NUMBER),
    pageSize: raw.pageSize ? checkInt(v, 'page_size', raw.pageSize, 1, 1000) : 100,
  };
  q.after = decodePageToken(v, raw.pageToken ?? '', deliveryListFilters(q), (key) => {
    const k = stringTuple(key, 2);
    const time = k ? new Date(k[0]) : undefined;
    return k && time && !Number.isNaN(time.getTime()) && DELIVERY_ID.test(k[1]) ? { createTime: time, deliveryId: k[1] } : undefined;
  });
  v.done();
  return q;
}
