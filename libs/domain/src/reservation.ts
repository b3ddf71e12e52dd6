import { Dec } from '@metering/pricing';
import type { ChargeInput } from './charge';
import type { CreditHold } from './credits';
import { DomainError } from './errors';
import type { LimitStatus } from './limits';
import { localDay } from './time';
import type { Tags } from './tags';
import { decodePageToken, encodePageToken, stringTuple } from './page-token';
import { checkId, checkInt, Violations } from './validation';

export type ReservationStatus = 'held' | 'settled' | 'released' | 'expired';

/** Amounts held against a user's and its account's limits until settled, released or expired. */
export interface Reservation {
  accountId: string;
  reservationId: string;
  idempotencyKey: string;
  userId: string;
  status: ReservationStatus;
  heldMessages: bigint;
  heldTokens: bigint;
  heldCost: Dec;
  /** The local day whose day and month counters hold the amounts. */
  periodDay: string;
  createTime: Date;
  expireTime: Date;
  finishTime?: Date;
  chargeId?: string;
  /** Fingerprint of the request that created it (idempotency). */
  requestHash: string;
  /** What it holds of the account's credit grants (empty: none; libs/domain/src/credits.ts). */
  creditHolds?: CreditHold[];
  /** The call's tags (CheckLimitsRequest.tags); empty when none. */
  tags?: Tags;
  /** The API key that made it; '' for the operator or with authentication off. */
  apiKeyId?: string;
  /** The declared dimensions' values of its tags when it was placed (null/absent: none declared): the tag scopes it holds on. */
  dimensions?: Tags | null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function checkReservationId(v: Violations, field: string, value: string, required = true): string {
  if (value === '') {
    if (required) v.add(field, 'is required');
  } else if (!UUID.test(value)) v.add(field, 'must be a reservation id (a UUID) returned by CheckLimits');
  return value.toLowerCase();
}

export interface ReservationRef {
  accountId: string;
  reservationId: string;
}

export function validateReservationRef(raw: ReservationRef): ReservationRef {
  const v = new Violations();
  const ref = { accountId: checkId(v, 'account_id', raw.accountId), reservationId: checkReservationId(v, 'reservation_id', raw.reservationId) };
  v.done();
  return ref;
}

/** A reservation was already settled, released or expired: it cannot be settled or released (again). Nothing was written. */
export class ReservationStateError extends DomainError {
  constructor(r: Pick<Reservation, 'reservationId' | 'status'>, action: 'settle' | 'release') {
    super('FAILED_PRECONDITION', `RESERVATION_${r.status.toUpperCase()}`, `reservation ${r.reservationId} is already ${r.status}; it cannot be ${action === 'settle' ? 'settled' : 'released'}`, {
      reservation_id: r.reservationId,
      status: r.status,
    });
  }
}

/** A charge names a reservation of another user. Nothing was written. */
export class ReservationUserMismatchError extends DomainError {
  constructor(r: Pick<Reservation, 'reservationId' | 'userId'>) {
    super('FAILED_PRECONDITION', 'RESERVATION_USER_MISMATCH', `reservation ${r.reservationId} belongs to user "${r.userId}", not to the charge's user`, {
      reservation_id: r.reservationId,
    });
  }
}

export class ReservationNotFoundError extends DomainError {
  constructor(reservationId: string) {
    super('NOT_FOUND', 'RESERVATION_NOT_FOUND', `reservation ${reservationId} does not exist in this account`, { reservation_id: reservationId });
  }
}

/** The estimate names a model without a price, so its cost cannot be held. */
export class UnpricedEstimateError extends DomainError {
  constructor(provider: string, model: string, why?: string) {
    super('FAILED_PRECONDITION', 'MODEL_UNPRICED', `no price for ${provider}/${model}${why ? ` (${why})` : ''}: give additional_cost instead of estimate`, { provider, model });
  }
}

/** A denied check, as an error (CheckLimits with deny_as_error): google.rpc.QuotaFailure names the limits. */
export class QuotaExceededError extends DomainError {
  constructor(
    message: string,
    readonly violations: Array<{ subject: string; description: string }>,
  ) {
    super('RESOURCE_EXHAUSTED', 'LIMIT_EXCEEDED', message);
  }

  static of(accountId: string, userId: string, message: string, limits: LimitStatus[]): QuotaExceededError {
    return new QuotaExceededError(
      message,
      limits
        .filter((l) => l.exceeded && l.enforcement === 'hard')
        .map((l) => ({
          subject: `account:${accountId}${{ user: `/user:${userId}`, account: '', api_key: `/api_key:${l.apiKeyId}`, tag: `/tag:${l.tagKey}=${l.tagValue}` }[l.scope]}/${l.period}/${l.measure}`,
          description: `limit ${l.limit}, used ${l.used}, reserved ${l.reserved}, remaining ${l.remaining} (period from ${l.periodStart})`,
        })),
    );
  }
}

/**
 * The local day a charge counts on: the day of its usage_time in the
 * account's zone, except that a charge settling a reservation without a
 * usage_time of its own counts on the reservation's day (whose day and month
 * counters held it). A call reserved before local midnight and recorded after
 * it is then counted on the period that admitted it, not on the next one.
 */
export function chargeDay(charge: { usageTime: Date; usageTimeSupplied: boolean }, settles: Pick<Reservation, 'periodDay'> | undefined, timeZone: string): string {
  return settles && !charge.usageTimeSupplied ? settles.periodDay : localDay(charge.usageTime, timeZone);
}

/** A map key of an account's reservation. */
export const reservationKey = (accountId: string, reservationId: string) => `${accountId}\u0000${reservationId}`;
/** A map key of an account's idempotency key. */
export const chargeKey = (c: { accountId: string; idempotencyKey: string }) => `${c.accountId}\u0000${c.idempotencyKey}`;

type Naming = Pick<ChargeInput, 'accountId' | 'userId' | 'idempotencyKey' | 'reservationId'>;

/** The charges naming a reservation that another charge of the same batch names too. */
export function contestedClaims<C extends Naming>(naming: C[]): C[] {
  const count = new Map<string, number>();
  for (const c of naming) if (c.reservationId) count.set(reservationKey(c.accountId, c.reservationId), (count.get(reservationKey(c.accountId, c.reservationId)) ?? 0) + 1);
  return naming.filter((c) => c.reservationId && (count.get(reservationKey(c.accountId, c.reservationId)) ?? 0) > 1);
}

/**
 * Which charge of a batch settles each reservation the batch names: a
 * reservation that is held (or already expired: the usage happened, so the
 * charge is recorded) is claimed by the first charge that names it whose key
 * is not already used (a used key is answered by its stored charge and writes
 * nothing). The others are refused: not found, another user's, already
 * settled or released (or claimed by an earlier charge of the batch).
 * Returns the refusals by charge key, the claims (reservation key -> charge
 * key), and the reservations a charge was refused for because another claimed
 * them (contested: the claim must then really write, see ChargesService).
 */
export function settlementClaims(naming: Naming[], reservations: Map<string, Reservation>, used: Set<string>) {
  const refused = new Map<string, DomainError>();
  const claimed = new Map<string, string>();
  const contested = new Set<string>();
  for (const c of naming) {
    if (!c.reservationId || used.has(chargeKey(c))) continue;
    const id = reservationKey(c.accountId, c.reservationId);
    const r = reservations.get(id);
    const problem = !r
      ? new ReservationNotFoundError(c.reservationId)
      : r.userId !== c.userId
        ? new ReservationUserMismatchError(r)
        : r.status === 'settled' || r.status === 'released' || claimed.has(id)
          ? new ReservationStateError({ reservationId: r.reservationId, status: claimed.has(id) ? 'settled' : r.status }, 'settle')
          : undefined;
    if (problem) refused.set(chargeKey(c), problem);
    else claimed.set(id, chargeKey(c));
    if (problem && claimed.has(id)) contested.add(id);
  }
  return { refused, claimed, contested };
}

export interface ListReservationsQuery {
  accountId: string;
  userId?: string;
  pageSize: number;
  /** List reservations after this one in (expire time, id) order (from the page token). */
  after?: { expireTime: Date; reservationId: string };
}

const reservationListFilters = (q: Pick<ListReservationsQuery, 'accountId' | 'userId'>) => [q.accountId, q.userId ?? ''];

export function encodeReservationPageToken(q: ListReservationsQuery, last: Reservation): string {
  return encodePageToken(reservationListFilters(q), [last.expireTime.toISOString(), last.reservationId]);
}

/** Validates a ListReservations request (open reservations of an account, soonest to expire first). */
export function validateListReservations(raw: { accountId: string; userId: string; pageSize: number; pageToken: string }): ListReservationsQuery {
  const v = new Violations();
  const filters = { accountId: checkId(v, 'account_id', raw.accountId), userId: checkId(v, 'user_id', raw.userId, false) || undefined };
  const pageSize = raw.pageSize === 0 ? 100 : checkInt(v, 'page_size', raw.pageSize, 1, 1000);
  const after = decodePageToken(v, raw.pageToken, reservationListFilters(filters), (key) => {
    const k = stringTuple(key, 2);
    const expireTime = k ? new Date(k[0]) : undefined;
    return k && expireTime && !Number.isNaN(expireTime.getTime()) && UUID.test(k[1]) ? { expireTime, reservationId: k[1] } : undefined;
  });
  v.done();
  return { ...filters, pageSize, after };
}
