import type { Alert, WebhookEndpoint } from './alerts';
import type { ChargeRecord } from './charge';
import type { Grant } from './credits';
import type { BalanceNotice } from './ledger';
import type { Limit, UsageCounter } from './limits';
import type { Reservation } from './reservation';
import { DomainError } from './errors';
import { checkId, checkInt, checkModel, checkProvider, Violations } from './validation';

export type ChargeEventKind =
  | 'charge_recorded'
  | 'charge_rerated'
  | 'reservation_expired'
  | 'soft_limit_exceeded'
  | 'grant_created'
  | 'grant_expired'
  | 'balance_low'
  | 'balance_exhausted'
  | 'alert_triggered'
  | 'alert_resolved'
  | 'webhook_endpoint_disabled';

/** A soft limit that a user's charge took past its amount, with the usage after it. */
export interface SoftLimitCrossing {
  userId: string;
  limit: Limit;
  periodStart: string;
  used: UsageCounter;
}

/** One event of an account's stream: gapless sequence numbers in commit order. */
export interface ChargeEvent {
  accountId: string;
  sequence: bigint;
  kind: ChargeEventKind;
  eventTime: Date;
  charge?: ChargeRecord;
  reservation?: Reservation;
  softLimit?: SoftLimitCrossing;
  /** For grant_created and grant_expired. */
  grant?: Grant;
  /** For balance_low and balance_exhausted. */
  balance?: BalanceNotice;
  alert?: Alert;
  webhookEndpoint?: WebhookEndpoint;
}

export interface WatchQuery {
  accountId: string;
  /** Deliver events after this sequence; undefined: only events committed from now on. */
  afterSequence?: bigint;
  userId?: string;
  provider?: string;
  model?: string;
}

const MAX_SEQUENCE = Number.MAX_SAFE_INTEGER;

export function validateWatch(raw: { accountId: string; afterSequence?: string; userId: string; provider: string; model: string }): WatchQuery {
  const v = new Violations();
  const q: WatchQuery = {
    accountId: checkId(v, 'account_id', raw.accountId),
    userId: checkId(v, 'user_id', raw.userId, false) || undefined,
    provider: checkProvider(v, 'provider', raw.provider, false) || undefined,
    model: checkModel(v, 'model', raw.model, false) || undefined,
  };
  if (raw.afterSequence !== undefined) q.afterSequence = BigInt(checkInt(v, 'after_sequence', raw.afterSequence, 0, MAX_SEQUENCE));
  v.done();
  return q;
}

/** Whether an event passes a subscriber's filters (events without a charge pass user filters by their reservation's user). */
export function eventMatches(e: ChargeEvent, q: WatchQuery): boolean {
  const userId = e.charge?.userId ?? e.reservation?.userId ?? e.softLimit?.userId ?? (e.grant?.userId || undefined) ?? e.alert?.changedByUserId;
  if (q.userId !== undefined && userId !== q.userId) return false;
  if (q.provider !== undefined && e.charge?.provider !== q.provider) return false;
  if (q.model !== undefined && e.charge?.model !== q.model) return false;
  return true;
}

/** A subscriber stopped reading for too long: its stream ends; it resumes from its cursor. */
export class SubscriberTooSlowError extends DomainError {
  constructor(resumeAfter: bigint, waitedMs: number) {
    super('ABORTED', 'SUBSCRIBER_TOO_SLOW', `the subscriber read nothing for ${waitedMs} ms; resume with after_sequence=${resumeAfter}`, { resume_after_sequence: resumeAfter.toString() });
  }
}

/** The server is shutting down: the stream ends; the subscriber resumes from its cursor on another server. */
export class StreamClosedError extends DomainError {
  constructor(resumeAfter: bigint) {
    super('UNAVAILABLE', 'SERVER_SHUTTING_DOWN', `the server is shutting down; resume with after_sequence=${resumeAfter}`, { resume_after_sequence: resumeAfter.toString() });
  }
}

/** The events after the subscriber's cursor were deleted by the retention sweep: resuming from it would miss them. */
export class EventsPrunedError extends DomainError {
  /** `oldest`: the first sequence still kept (the next one to be written when none is). */
  constructor(afterSequence: bigint, oldest: bigint) {
    super(
      'OUT_OF_RANGE',
      'EVENTS_PRUNED',
      `the events after sequence ${afterSequence} up to ${oldest - 1n} are past the retention period and were deleted; resume with after_sequence=${oldest - 1n} to accept the gap`,
      { oldest_sequence: oldest.toString(), resume_after_sequence: (oldest - 1n).toString() },
    );
  }
}

/** A cursor past the account's last event (from another database, or made up): following it would skip the events up to it. */
export class CursorAheadError extends DomainError {
  constructor(afterSequence: bigint, last: bigint) {
    super('OUT_OF_RANGE', 'CURSOR_AHEAD', `after_sequence ${afterSequence} is past the account's last event (${last}); resume with after_sequence <= ${last}`, {
      field: 'after_sequence',
      last_sequence: last.toString(),
    });
  }
}
