import { asSeen, encodeReservationPageToken, entriesOf, LedgerChange, LedgerEntries, Reservation, ReservationNotFoundError, ReservationRef, ReservationStateError, validateListReservations, validateReservationRef } from '@metering/domain';
import { Db, inTransaction, read, Tx } from '../store/db';
import { applyEntries } from '../store/ledger.repo';
import { accountsWithDueReservations, findReservation, listOpenReservations, lockDueReservations, lockReservations } from '../store/reservations.repo';
import { applyBooks, Books } from './credits.service';

export const EXPIRY_BATCH = 500;

/**
 * Locks up to EXPIRY_BATCH held reservations of the account past their expiry,
 * skipping any another transaction holds, and returns their expiry as ledger
 * changes: the caller applies them with its own.
 */
export async function dueExpiries(tx: Tx, now: Date, accountId: string): Promise<LedgerChange[]> {
  const due = await lockDueReservations(tx, now, EXPIRY_BATCH, accountId);
  return due.map((reservation) => ({ kind: 'hold_expired', reservation, at: now }));
}

/** ReleaseReservation, GetReservation, ListReservations, and the expiry sweeper. Settling is part of RecordCharge (ChargesService). */
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
      const released: LedgerChange = { kind: 'hold_released', reservation: r, at: now };
      if (r.creditHolds?.length) {
        // Its credit holds end too (the account's grants locked after the reservation, as always).
        const books = await Books.open(tx, [r.accountId], now);
        books.get(r.accountId)?.releaseHolds(r, now);
        await applyBooks(tx, books, now, [released]);
      } else await applyEntries(tx, entriesOf([released]), now);
      return { ...r, status: 'released', finishTime: now };
    });
  }

  async get(raw: ReservationRef): Promise<Reservation> {
    const ref = validateReservationRef(raw);
    const r = await read(() => findReservation(this.db, ref));
    if (!r) throw new ReservationNotFoundError(ref.reservationId);
    return asSeen(r, this.clock());
  }

  /** ListReservations: a page of the account's open reservations, soonest to expire first. */
  async list(raw: { accountId: string; userId: string; pageSize: number; pageToken: string }): Promise<{ reservations: Reservation[]; nextPageToken: string }> {
    const q = validateListReservations(raw);
    const found = await read(() => listOpenReservations(this.db, q, this.clock()));
    const reservations = found.slice(0, q.pageSize);
    return { reservations, nextPageToken: found.length > q.pageSize ? encodeReservationPageToken(q, reservations[reservations.length - 1]) : '' };
  }

  /**
   * Expires every due reservation; returns how many. Account by account: the due accounts are
   * read first without locks, then each account's holds are locked (account_id equality, SKIP
   * LOCKED) and expired in a transaction of that account alone, EXPIRY_BATCH per transaction, so
   * that on Citus every transaction routes to one shard.
   */
  async expireAllDue(): Promise<number> {
    let total = 0;
    let after = '';
    for (;;) {
      const accounts = await read(() => accountsWithDueReservations(this.db, this.clock(), EXPIRY_BATCH, after));
      for (const accountId of accounts) total += await this.expireDueOf(accountId);
      if (accounts.length < EXPIRY_BATCH) return total;
      after = accounts[accounts.length - 1];
    }
  }

  /** Expires the due reservations of one account, EXPIRY_BATCH per transaction. */
  private async expireDueOf(accountId: string): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await inTransaction(this.db, async (tx) => {
        const now = this.clock();
        const due = await dueExpiries(tx, now, accountId);
        // Expired holds on credits end with their reservation (grants locked after the reservations).
        const holding = due.flatMap((c) => (c.kind === 'hold_expired' && c.reservation.creditHolds?.length ? [c.reservation] : []));
        const books = await Books.open(tx, holding.map((r) => r.accountId), now);
        for (const r of holding) books.get(r.accountId)?.releaseHolds(r, now);
        const entries: LedgerEntries = entriesOf([...due, ...books.changes]);
        await applyEntries(tx, entries, now, undefined, books.writes(entries, now));
        return entries.reservations.length;
      });
      total += n;
      if (n < EXPIRY_BATCH) return total;
    }
  }
}
