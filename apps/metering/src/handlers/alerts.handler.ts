import {
  Alert as PbAlert,
  AlertDirection,
  AlertRule as PbAlertRule,
  AlertRuleKind,
  CreateAlertRuleRequest,
  CreateAlertRuleResponse,
  CreateWebhookEndpointRequest,
  CreateWebhookEndpointResponse,
  DeleteAlertRuleRequest,
  DeleteAlertRuleResponse,
  DeleteWebhookEndpointRequest,
  DeleteWebhookEndpointResponse,
  Delivery as PbDelivery,
  DeliveryAttempt as PbDeliveryAttempt,
  DeliveryStatus,
  GetAlertRuleRequest,
  GetAlertRuleResponse,
  GetWebhookEndpointRequest,
  GetWebhookEndpointResponse,
  LimitEnforcement,
  LimitMeasure,
  LimitPeriod,
  ListAlertRulesRequest,
  ListAlertRulesResponse,
  ListDeliveriesRequest,
  ListDeliveriesResponse,
  ListDeliveryAttemptsRequest,
  ListDeliveryAttemptsResponse,
  ListWebhookEndpointsRequest,
  ListWebhookEndpointsResponse,
  RedeliverRequest,
  RedeliverResponse,
  RotateWebhookSecretRequest,
  RotateWebhookSecretResponse,
  SendTestEventRequest,
  SendTestEventResponse,
  UpdateAlertRuleRequest,
  UpdateAlertRuleResponse,
  UpdateWebhookEndpointRequest,
  UpdateWebhookEndpointResponse,
  WebhookEndpoint as PbWebhookEndpoint,
  WebhookFormat,
} from '@metering/contracts';
import { Alert, AlertRule, Delivery, DeliveryAttempt, WebhookEndpoint } from '@metering/domain';
import { formatDecimal } from '@metering/pricing';
import { AlertsService } from '../services/alerts.service';
import { toProtoMoney, toProtoTimestamp } from './convert';

/** Alert rules, webhook endpoints and deliveries: wire -> service -> wire (the generated requests have the shape of the domain inputs). */

const KIND = { limit: AlertRuleKind.ALERT_RULE_KIND_LIMIT, spend: AlertRuleKind.ALERT_RULE_KIND_SPEND, balance: AlertRuleKind.ALERT_RULE_KIND_BALANCE };
const DIRECTION = { triggered: AlertDirection.ALERT_DIRECTION_TRIGGERED, resolved: AlertDirection.ALERT_DIRECTION_RESOLVED };
const PERIOD = { day: LimitPeriod.LIMIT_PERIOD_DAY, month: LimitPeriod.LIMIT_PERIOD_MONTH };
const MEASURE = { messages: LimitMeasure.LIMIT_MEASURE_MESSAGES, tokens: LimitMeasure.LIMIT_MEASURE_TOKENS, cost: LimitMeasure.LIMIT_MEASURE_COST };
const ENFORCEMENT = { hard: LimitEnforcement.LIMIT_ENFORCEMENT_HARD, soft: LimitEnforcement.LIMIT_ENFORCEMENT_SOFT };
const FORMAT = { standard: WebhookFormat.WEBHOOK_FORMAT_STANDARD, slack: WebhookFormat.WEBHOOK_FORMAT_SLACK };
const STATUS = { pending: DeliveryStatus.DELIVERY_STATUS_PENDING, delivered: DeliveryStatus.DELIVERY_STATUS_DELIVERED, failed: DeliveryStatus.DELIVERY_STATUS_FAILED };
const time = (d: Date | undefined) => (d ? toProtoTimestamp(d) : undefined);

export const toProtoAlertRule = (r: AlertRule): PbAlertRule => ({
  accountId: r.accountId,
  ruleId: r.ruleId,
  description: r.description,
  kind: KIND[r.kind],
  limit: r.limit
    ? { userId: r.limit.userId, period: PERIOD[r.limit.period], measure: MEASURE[r.limit.measure], enforcement: ENFORCEMENT[r.limit.enforcement], percentages: r.limit.percentages.map(formatDecimal) }
    : undefined,
  spend: r.spend ? { period: PERIOD[r.spend.period], userId: r.spend.userId, eachUser: r.spend.eachUser, amounts: r.spend.amounts.map((a) => toProtoMoney(a)) } : undefined,
  balance: r.balance ? { amounts: r.balance.amounts.map((a) => toProtoMoney(a)) } : undefined,
  createTime: time(r.createTime),
  updateTime: time(r.updateTime),
});

export const toProtoAlert = (a: Alert): PbAlert => ({
  ruleId: a.ruleId,
  kind: KIND[a.kind],
  description: a.description,
  direction: DIRECTION[a.direction],
  userId: a.userId,
  period: a.period ? PERIOD[a.period] : LimitPeriod.LIMIT_PERIOD_UNSPECIFIED,
  periodStart: a.periodStart,
  measure: MEASURE[a.measure],
  threshold: formatDecimal(a.threshold),
  percentage: a.percentage ? formatDecimal(a.percentage) : '',
  limitAmount: a.limitAmount ? formatDecimal(a.limitAmount) : '',
  used: a.used ? formatDecimal(a.used) : '',
  available: a.available ? formatDecimal(a.available) : '',
  changedByUserId: a.changedByUserId,
  periodEnded: a.periodEnded === true,
});

export const toProtoEndpoint = (e: WebhookEndpoint): PbWebhookEndpoint => ({
  accountId: e.accountId,
  endpointId: e.endpointId,
  url: e.url,
  description: e.description,
  enabled: e.enabled,
  eventTypes: e.eventTypes,
  format: FORMAT[e.format],
  secret: e.secret ?? '',
  disabledReason: e.disabledReason,
  createTime: time(e.createTime),
  updateTime: time(e.updateTime),
});

const toProtoDelivery = (d: Delivery): PbDelivery => ({
  accountId: d.accountId,
  deliveryId: d.deliveryId,
  endpointId: d.endpointId,
  eventType: d.eventType,
  status: STATUS[d.status],
  attemptCount: d.attemptCount,
  createTime: time(d.createTime),
  nextAttemptTime: time(d.nextAttemptTime),
  payload: d.payload,
});

const toProtoAttempt = (a: DeliveryAttempt): PbDeliveryAttempt => ({
  deliveryId: a.deliveryId,
  attempt: a.attempt,
  startTime: time(a.startTime),
  latencyMs: String(a.latencyMs),
  httpStatus: a.httpStatus,
  error: a.error,
  responseExcerpt: a.responseExcerpt,
  success: a.success,
  nextAttemptTime: time(a.nextAttemptTime),
});

type RuleIn = Parameters<AlertsService['createRule']>[0];
type EndpointIn = Parameters<AlertsService['createEndpoint']>[0];

export const createAlertRuleHandler = (s: AlertsService) => async (req: CreateAlertRuleRequest): Promise<CreateAlertRuleResponse> => ({ rule: toProtoAlertRule(await s.createRule(req.rule as RuleIn)) });
export const getAlertRuleHandler = (s: AlertsService) => async (req: GetAlertRuleRequest): Promise<GetAlertRuleResponse> => ({ rule: toProtoAlertRule(await s.getRule(req)) });
export const listAlertRulesHandler = (s: AlertsService) => async (req: ListAlertRulesRequest): Promise<ListAlertRulesResponse> => ({ rules: (await s.listRules(req)).map(toProtoAlertRule) });
export const updateAlertRuleHandler = (s: AlertsService) => async (req: UpdateAlertRuleRequest): Promise<UpdateAlertRuleResponse> => ({ rule: toProtoAlertRule(await s.updateRule(req.rule as RuleIn)) });
export const deleteAlertRuleHandler = (s: AlertsService) => async (req: DeleteAlertRuleRequest): Promise<DeleteAlertRuleResponse> => ({ deleted: await s.deleteRule(req) });

export const createWebhookEndpointHandler = (s: AlertsService) => async (req: CreateWebhookEndpointRequest): Promise<CreateWebhookEndpointResponse> => ({ endpoint: toProtoEndpoint(await s.createEndpoint(req.endpoint as EndpointIn)) });
export const getWebhookEndpointHandler = (s: AlertsService) => async (req: GetWebhookEndpointRequest): Promise<GetWebhookEndpointResponse> => ({ endpoint: toProtoEndpoint(await s.getEndpoint(req)) });
export const listWebhookEndpointsHandler = (s: AlertsService) => async (req: ListWebhookEndpointsRequest): Promise<ListWebhookEndpointsResponse> => ({ endpoints: (await s.listEndpoints(req)).map(toProtoEndpoint) });
export const updateWebhookEndpointHandler = (s: AlertsService) => async (req: UpdateWebhookEndpointRequest): Promise<UpdateWebhookEndpointResponse> => ({ endpoint: toProtoEndpoint(await s.updateEndpoint(req.endpoint as EndpointIn)) });
export const deleteWebhookEndpointHandler = (s: AlertsService) => async (req: DeleteWebhookEndpointRequest): Promise<DeleteWebhookEndpointResponse> => ({ deleted: await s.deleteEndpoint(req) });
export const rotateWebhookSecretHandler = (s: AlertsService) => async (req: RotateWebhookSecretRequest): Promise<RotateWebhookSecretResponse> => ({ endpoint: toProtoEndpoint(await s.rotateSecret(req)) });

export const listDeliveriesHandler = (s: AlertsService) => async (req: ListDeliveriesRequest): Promise<ListDeliveriesResponse> => {
  const page = await s.listDeliveries(req);
  return { deliveries: page.deliveries.map(toProtoDelivery), nextPageToken: page.nextPageToken };
};
export const listDeliveryAttemptsHandler = (s: AlertsService) => async (req: ListDeliveryAttemptsRequest): Promise<ListDeliveryAttemptsResponse> => {
  const { delivery, attempts } = await s.listAttempts(req);
  return { delivery: toProtoDelivery(delivery), attempts: attempts.map(toProtoAttempt) };
};
export const redeliverHandler = (s: AlertsService) => async (req: RedeliverRequest): Promise<RedeliverResponse> => ({ delivery: toProtoDelivery(await s.redeliver(req)) });
export const sendTestEventHandler = (s: AlertsService) => async (req: SendTestEventRequest): Promise<SendTestEventResponse> => ({ delivery: toProtoDelivery(await s.sendTest(req)) });
