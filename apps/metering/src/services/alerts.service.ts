import {
  Alert,
  AlertRule,
  DEFAULT_TIME_ZONE,
  LedgerEvent,
  LimitPeriod,
  localDay,
  periodEnded,
  periodEndNotices,
  usedOf,
  AlertRuleInput,
  AlertRuleNotFoundError,
  AllowList,
  checkId,
  Delivery,
  DeliveryAttempt,
  DeliveryNotFoundError,
  encodeDeliveryPageToken,
  MAX_ALERT_RULES,
  MAX_WEBHOOK_ENDPOINTS,
  TooManyError,
  validateAlertRule,
  validateDeliveryRef,
  validateListDeliveries,
  validateRef,
  validateWebhookEndpoint,
  Violations,
  WebhookEndpoint,
  WebhookEndpointInput,
  WebhookEndpointNotFoundError,
} from '@metering/domain';
import { randomBytes, randomUUID } from 'node:crypto';
import * as repo from '../store/alerts.repo';
import { Db, inTransaction, read } from '../store/db';
import { lockCounters } from '../store/ledger.repo';

/** A new signing secret as Standard Webhooks writes them: "whsec_" and base64 of 24 random bytes (192 bits). */
export const newWebhookSecret = (): string => `whsec_${randomBytes(24).toString('base64')}`;

function validateAccount(accountId: string): string {
  const v = new Violations();
  const id = checkId(v, 'account_id', accountId ?? '');
  v.done();
  return id;
}

/**
 * Alert rules, webhook endpoints and the delivery log (the RPCs). Alerts
 * themselves are made by the write paths (libs/domain alertEvents, in the
 * transaction of the change) and delivered by the WebhookDispatcher.
 */
export class AlertsService {
  constructor(
    private readonly db: Db,
    /** The destination allow-list endpoint URLs are checked against. */
    private readonly allow: AllowList,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  // ---- Rules ----

  async createRule(raw: AlertRuleInput | undefined): Promise<AlertRule> {
    const rule = { ...validateAlertRule(raw, false), ruleId: randomUUID() };
    return inTransaction(this.db, async (tx) => {
      if ((await repo.countRules(tx, rule.accountId)) >= MAX_ALERT_RULES) throw new TooManyError('alert rules', MAX_ALERT_RULES);
      return repo.insertRule(tx, rule, this.clock());
    });
  }

  async getRule(raw: { accountId: string; ruleId: string }): Promise<AlertRule> {
    const ref = validateRef({ accountId: raw.accountId, id: raw.ruleId }, 'rule_id');
    const [rule] = await read(() => repo.listRules(this.db, ref.accountId, ref.id));
    if (!rule) throw new AlertRuleNotFoundError(ref.id);
    return rule;
  }

  async listRules(raw: { accountId: string }): Promise<AlertRule[]> {
    const accountId = validateAccount(raw.accountId);
    return read(() => repo.listRules(this.db, accountId));
  }

  async updateRule(raw: AlertRuleInput | undefined): Promise<AlertRule> {
    const rule = validateAlertRule(raw, true);
    return inTransaction(this.db, async (tx) => {
      const kind = await repo.ruleKind(tx, rule.accountId, rule.ruleId);
      if (!kind) throw new AlertRuleNotFoundError(rule.ruleId);
      if (kind !== rule.kind) {
        const v = new Violations();
        v.add('rule.kind', `cannot change (the rule is a ${kind.toUpperCase()} rule); create a new rule instead`);
        v.done();
      }
      const updated = await repo.updateRule(tx, rule, this.clock());
      if (!updated) throw new AlertRuleNotFoundError(rule.ruleId);
      // Its thresholds changed: the alerts of the old ones no longer stand (no period-end notice for them).
      await repo.dropRuleStanding(tx, rule.accountId, rule.ruleId);
      return updated;
    });
  }

  async deleteRule(raw: { accountId: string; ruleId: string }): Promise<boolean> {
    const ref = validateRef({ accountId: raw.accountId, id: raw.ruleId }, 'rule_id');
    return inTransaction(this.db, async (tx) => {
      await repo.dropRuleStanding(tx, ref.accountId, ref.id);
      return repo.deleteRule(tx, ref.accountId, ref.id);
    });
  }

  /**
   * The period-end sweep (every process, like the reservation sweep): each
   * alert still standing triggered in a period that has ended in its
   * account's time zone is resolved once, with the period's final usage
   * (alert.resolved, period_ended), on the charge stream and to the
   * endpoints. Per account, one transaction: the counters the alerts measure
   * are locked first (in key order, as every writer locks them), then the
   * standing rows are dropped (only what this transaction dropped is told:
   * another process sweeping the same rows finds them gone), then the events
   * go to the outbox. Returns how many were resolved.
   */
  async resolveEndedPeriods(batch = 500): Promise<number> {
    const now = this.clock();
    const upTo = localDay(now, 'UTC');
    // BALANCE alerts have no period and are never here (their standing is kept on the credit row): a period's end never resolves them.
    const due = (await repo.standingAlerts(this.db, upTo, batch)).filter((s) => periodEnded(s.alert, now, s.timeZone ?? DEFAULT_TIME_ZONE)).map((s) => s.alert);
    let resolved = 0;
    for (const accountId of [...new Set(due.map((a) => a.accountId))]) {
      const mine = due.filter((a) => a.accountId === accountId);
      resolved += await inTransaction(this.db, async (tx) => {
        const counters = await lockCounters(tx, mine.map((a) => ({ accountId, period: a.period as LimitPeriod, periodStart: a.periodStart, userId: a.userId })), now);
        const dropped = await repo.dropStanding(tx, mine);
        const final = (a: Alert) => usedOf(a.measure, counters.find((c) => c.period === a.period && c.periodStart === a.periodStart && c.userId === a.userId)?.used);
        const notices = periodEndNotices(dropped, final);
        if (notices.length) await repo.appendEventsWithDeliveries(tx, notices.map((alert) => ({ kind: 'alert_resolved', alert }) as LedgerEvent), now);
        return notices.length;
      });
    }
    return resolved;
  }

  // ---- Endpoints ----

  async createEndpoint(raw: WebhookEndpointInput | undefined): Promise<WebhookEndpoint> {
    const endpoint = { ...validateWebhookEndpoint(raw, false, this.allow), endpointId: randomUUID(), secret: newWebhookSecret(), disabledReason: '' };
    return inTransaction(this.db, async (tx) => {
      if ((await repo.countEndpoints(tx, endpoint.accountId)) >= MAX_WEBHOOK_ENDPOINTS) throw new TooManyError('webhook endpoints', MAX_WEBHOOK_ENDPOINTS);
      return repo.insertEndpoint(tx, endpoint, this.clock());
    });
  }

  async getEndpoint(raw: { accountId: string; endpointId: string }): Promise<WebhookEndpoint> {
    const ref = validateRef({ accountId: raw.accountId, id: raw.endpointId }, 'endpoint_id');
    const [endpoint] = await read(() => repo.listEndpoints(this.db, ref.accountId, ref.id));
    if (!endpoint) throw new WebhookEndpointNotFoundError(ref.id);
    return endpoint;
  }

  async listEndpoints(raw: { accountId: string }): Promise<WebhookEndpoint[]> {
    const accountId = validateAccount(raw.accountId);
    return read(() => repo.listEndpoints(this.db, accountId));
  }

  async updateEndpoint(raw: WebhookEndpointInput | undefined): Promise<WebhookEndpoint> {
    const endpoint = validateWebhookEndpoint(raw, true, this.allow);
    const updated = await inTransaction(this.db, (tx) => repo.updateEndpoint(tx, endpoint, this.clock()));
    if (!updated) throw new WebhookEndpointNotFoundError(endpoint.endpointId);
    return updated;
  }

  async deleteEndpoint(raw: { accountId: string; endpointId: string }): Promise<boolean> {
    const ref = validateRef({ accountId: raw.accountId, id: raw.endpointId }, 'endpoint_id');
    return inTransaction(this.db, (tx) => repo.deleteEndpoint(tx, ref.accountId, ref.id));
  }

  async rotateSecret(raw: { accountId: string; endpointId: string }): Promise<WebhookEndpoint> {
    const ref = validateRef({ accountId: raw.accountId, id: raw.endpointId }, 'endpoint_id');
    const rotated = await inTransaction(this.db, (tx) => repo.rotateSecret(tx, ref.accountId, ref.id, newWebhookSecret(), this.clock()));
    if (!rotated) throw new WebhookEndpointNotFoundError(ref.id);
    return rotated;
  }

  // ---- Deliveries ----

  async listDeliveries(raw: Parameters<typeof validateListDeliveries>[0]): Promise<{ deliveries: Delivery[]; nextPageToken: string }> {
    const q = validateListDeliveries(raw);
    const rows = await read(() => repo.listDeliveries(this.db, q));
    const page = rows.slice(0, q.pageSize);
    return { deliveries: page, nextPageToken: rows.length > q.pageSize ? encodeDeliveryPageToken(q, page[page.length - 1]) : '' };
  }

  async listAttempts(raw: { accountId: string; deliveryId: string }): Promise<{ delivery: Delivery; attempts: DeliveryAttempt[] }> {
    const ref = validateDeliveryRef(raw);
    const delivery = await read(() => repo.findDelivery(this.db, ref.accountId, ref.deliveryId));
    if (!delivery) throw new DeliveryNotFoundError(ref.deliveryId);
    return { delivery, attempts: await read(() => repo.listAttempts(this.db, ref.accountId, ref.deliveryId)) };
  }

  async redeliver(raw: { accountId: string; deliveryId: string }): Promise<Delivery> {
    const ref = validateDeliveryRef(raw);
    const delivery = await inTransaction(this.db, (tx) => repo.redeliver(tx, ref.accountId, ref.deliveryId, this.clock()));
    if (!delivery) throw new DeliveryNotFoundError(ref.deliveryId);
    return delivery;
  }

  async sendTest(raw: { accountId: string; endpointId: string }): Promise<Delivery> {
    const ref = validateRef({ accountId: raw.accountId, id: raw.endpointId }, 'endpoint_id');
    return inTransaction(this.db, async (tx) => {
      const [endpoint] = await repo.listEndpoints(tx, ref.accountId, ref.id);
      if (!endpoint) throw new WebhookEndpointNotFoundError(ref.id);
      return repo.insertTestDelivery(tx, endpoint, this.clock());
    });
  }
}
