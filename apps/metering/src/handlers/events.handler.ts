import type { Metadata } from '@grpc/grpc-js';
import { ChargeEvent as PbChargeEvent, ChargeEventKind, WatchChargesRequest, WatchChargesResponse } from '@metering/contracts';
import { ChargeEvent, recordedStatus, StreamClosedError, SubscriberTooSlowError } from '@metering/domain';
import type { StreamControl } from '../grpc/stream';
import { EventsService } from '../services/events.service';
import { toProtoCharge, toProtoReservation, toProtoTimestamp } from './convert';
import { toProtoBalanceNotice, toProtoGrant } from './credits.handler';
import { toProtoLimitStatus } from './limits.handler';
import { toProtoAlert, toProtoEndpoint } from './alerts.handler';

/** WatchCharges: events -> wire, with flow control; a subscriber too slow to read, or a shutdown, ends the stream with its cursor. */

/** Response header of WatchCharges: the sequence the stream starts after. */
const START_SEQUENCE_HEADER = 'x-start-after-sequence';

const KIND = {
  charge_recorded: ChargeEventKind.CHARGE_EVENT_KIND_CHARGE_RECORDED,
  charge_rerated: ChargeEventKind.CHARGE_EVENT_KIND_CHARGE_RERATED,
  reservation_expired: ChargeEventKind.CHARGE_EVENT_KIND_RESERVATION_EXPIRED,
  soft_limit_exceeded: ChargeEventKind.CHARGE_EVENT_KIND_SOFT_LIMIT_EXCEEDED,
  grant_created: ChargeEventKind.CHARGE_EVENT_KIND_GRANT_CREATED,
  grant_expired: ChargeEventKind.CHARGE_EVENT_KIND_GRANT_EXPIRED,
  balance_low: ChargeEventKind.CHARGE_EVENT_KIND_BALANCE_LOW,
  balance_exhausted: ChargeEventKind.CHARGE_EVENT_KIND_BALANCE_EXHAUSTED,
  alert_triggered: ChargeEventKind.CHARGE_EVENT_KIND_ALERT_TRIGGERED,
  alert_resolved: ChargeEventKind.CHARGE_EVENT_KIND_ALERT_RESOLVED,
  webhook_endpoint_disabled: ChargeEventKind.CHARGE_EVENT_KIND_WEBHOOK_ENDPOINT_DISABLED,
};

const toProtoEvent = (e: ChargeEvent): PbChargeEvent => ({
  accountId: e.accountId,
  sequence: e.sequence.toString(),
  kind: KIND[e.kind],
  eventTime: toProtoTimestamp(e.eventTime),
  charge: e.charge ? toProtoCharge(e.charge) : undefined,
  reservation: e.reservation ? toProtoReservation(e.reservation) : undefined,
  limit: e.softLimit ? toProtoLimitStatus(recordedStatus(e.softLimit.limit, e.softLimit.periodStart, e.softLimit.used)) : undefined,
  userId: e.softLimit?.userId ?? '',
  grant: e.grant ? toProtoGrant(e.grant, e.eventTime) : undefined,
  balance: e.balance ? toProtoBalanceNotice(e.balance) : undefined,
  alert: e.alert ? toProtoAlert(e.alert) : undefined,
  webhookEndpoint: e.webhookEndpoint ? toProtoEndpoint(e.webhookEndpoint) : undefined,
});

export const watchChargesHandler =
  (service: EventsService, slowMs: number) =>
  async (req: WatchChargesRequest, _metadata: Metadata, control: StreamControl): Promise<void> => {
    const feed = await service.open(req);
    // Where the stream starts, so that a client that started "from now" and is cut off before
    // its first event can resume without a gap.
    control.open({ [START_SEQUENCE_HEADER]: feed.start.toString() });
    // The cursor to resume from: the last event handed to the stream, or where it started.
    // A message handed over is delivered before the status that ends the stream (HTTP/2 keeps
    // their order), also when the client was too slow to read it in time, so the cursor counts it.
    let sent = feed.start;
    for await (const event of feed.events(control.signal)) {
      const read = await control.write({ event: toProtoEvent(event) } satisfies WatchChargesResponse);
      sent = event.sequence;
      if (!read) throw new SubscriberTooSlowError(sent, slowMs);
    }
    if (control.closing()) throw new StreamClosedError(sent);
  };
