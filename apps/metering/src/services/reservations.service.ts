import { Reservation, ReservationNotFoundError, ReservationRef, ReservationStateError, validateReservationRef } from '@metering/domain';
import { Dec } from '@metering/pricing';
import { Db, inTransaction, read, Tx } from '../store/db';
import { appendEvents, NewEvent } from '../store/events.repo';
import { findReservation, finishReservations, lockDueReservations, lockReservations } from '../store/reservations.repo';
import { applyRollupDeltas, HoldDelta } from '../store/usage.repo';

/** What a reservation adds to (sign 1) or removes from (sign -1) the held amounts of its counters. */
export function holdOf(r: Reservation, sign: 1 | -1): HoldDelta {
  const s = BigInt(sign);
  return { accountId: r.accountId, userId: r.userId, periodDay: r.periodDay, messages: r.heldMessages * s, tokens: r.heldTokens * s, cost: r.heldCost.times(sign) };
}

/** A held reservation past its expiry reads as expired (the sweeper frees it within its interval). */
export function asSeen(r: Reservation, now: Date): Reservation {
  return r.status === 'held' && r.expireTime <= now ? { ...r, status: 'expired' } : r;
}

export const EXPIRY_BATCH = 500;

/**
 * Frees held reservations whose expiry has passed, in the caller's
 * transaction (of one account, or of all): locks them (skipping any another
 * transaction holds), marks them expired, and returns the holds to remove
 * from the counters and the events to append. The caller applies the holds
 * with its own counter changes, in one ordered statement, and appends the
 * events last.
 */
export async function expireDue(tx: Tx, now: Date, accountId?: string): Promise<{ holds: HoldDelta[]; events: NewEvent[] }> {
  const due = await lockDueReservations(tx, now, EXPIRY_BATCH, accountId);
  await finishReservations(tx, due.map((r) => ({ ref: r, status: 'expired', at: now })));
  return {
    holds: due.map((r) => holdOf(r, -1)),
    events: due.map((r) => ({ kind: 'reservation_expired', reservation: { ...r, status: 'expired', finishTime: now } })),
  };
}

/** ReleaseReservation, GetReservation, and the expiry sweeper. Settling is part of RecordCharge (ChargesService). */
export class ReservationsService {
  constructor(
    private readonly db: Db,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  async release(raw: ReservationRef): Promise<Reservation> {
    const ref = validateReservationRef(raw);
    const now = this.clock();
    return inTransaction(this.db, async (tx) => {
      const [r] = await lockReservations(tx, [ref]);
      if (!r) throw new ReservationNotFoundError(ref.reservationId);
      if (r.status !== 'held') throw new ReservationStateError(r, 'release');
      await applyRollupDeltas(tx, [], [holdOf(r, -1)]);
      await finishReservations(tx, [{ ref, status: 'released', at: now }]);
      return { ...r, status: 'released', finishTime: now };
    });
  }

  async get(raw: ReservationRef): Promise<Reservation> {
    const ref = validateReservationRef(raw);
    const r = await read(() => findReservation(this.db, ref));
    if (!r) throw new ReservationNotFoundError(ref.reservationId);
    return asSeen(r, this.clock());
  }

  /** Expires every due reservation, EXPIRY_BATCH per transaction; returns how many. */
  async expireAllDue(): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await inTransaction(this.db, async (tx) => {
        const { holds, events } = await expireDue(tx, this.clock());
        await applyRollupDeltas(tx, [], holds);
        await appendEvents(tx, events);
        return holds.length;
      });
      total += n;
      if (n < EXPIRY_BATCH) return total;
    }
  }
}

export const ZERO_HOLD = (accountId: string, userId: string, periodDay: string): HoldDelta => ({ accountId, userId, periodDay, messages: 0n, tokens: 0n, cost: new Dec(0) });
