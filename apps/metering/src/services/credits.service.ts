import {
  balanceOf,
  CreditBalance,
  CreditBook,
  CreditPolicy,
  creditWritesOf,
  DEFAULT_CREDIT_POLICY,
  DEFAULT_TIME_ZONE,
  encodeCreditPageToken,
  entriesOf,
  Grant,
  grantAsSeen,
  grantContent,
  GrantNotFoundError,
  IdempotencyConflictError,
  LedgerChange,
  LedgerEntries,
  localDay,
  monthStart,
  BalanceEntry,
  ConflictRetryError,
  validateCreateGrant,
  validateCreditPage,
  validateGetBalance,
  validateSetCreditPolicy,
  validateVoidGrant,
  CreateGrantInput,
  canonicalJson,
  CreditWrites,
} from '@metering/domain';
import { Dec } from '@metering/pricing';
import { createHash, randomUUID } from 'node:crypto';
import {
  accountsWithDueGrants,
  ensureCreditAccount,
  findGrantByKey,
  insertGrant,
  listBalanceEntries,
  listGrants,
  lockCredits,
  readCredits,
  upsertCreditPolicy,
} from '../store/credits.repo';
import { Db, inTransaction, read, Tx } from '../store/db';
import { applyEntries } from '../store/ledger.repo';
import { readAccount } from '../store/accounts.repo';

/**
 * The credit books of a transaction: the locked credit rows of some accounts
 * (lockCredits, in the lock order), one CreditBook per account that has
 * credits, and the available balance each had before (for BALANCE_LOW /
 * BALANCE_EXHAUSTED). Every write path that moves credits opens its books
 * after the reservations and charges it locks and before the counters.
 * Opening expires the grants past their expiry first (the sweeper's job,
 * done by whichever writer gets there first), so a later burn never takes
 * from them.
 */
export class Books {
  private constructor(
    readonly books: Map<string, CreditBook>,
    private readonly before: Map<string, Dec>,
  ) {}

  static async open(tx: Tx, accountIds: string[], now: Date, grantIds: string[] = []): Promise<Books> {
    if (accountIds.length === 0) return new Books(new Map(), new Map());
    const { accounts, grants } = await lockCredits(tx, accountIds, grantIds);
    const books = new Map<string, CreditBook>();
    const before = new Map<string, Dec>();
    for (const account of accounts.values()) {
      const book = new CreditBook(account, grants.filter((g) => g.accountId === account.accountId));
      before.set(account.accountId, book.available(now));
      book.expireDue(now);
      books.set(account.accountId, book);
    }
    return new Books(books, before);
  }

  get(accountId: string): CreditBook | undefined {
    return this.books.get(accountId);
  }

  get changes(): LedgerChange[] {
    return [...this.books.values()].flatMap((b) => b.changes);
  }

  /** The writes of the books' changes (which `entries` were made from), and their balance events. */
  writes(entries: LedgerEntries, now: Date): CreditWrites | undefined {
    return this.books.size ? creditWritesOf([...this.books.values()], this.before, entries, now) : undefined;
  }
}

/** Applies books' changes alone (and any given before them): one ledger apply with its credit writes. */
export async function applyBooks(tx: Tx, books: Books, now: Date, before: LedgerChange[] = []): Promise<void> {
  const entries = entriesOf([...before, ...books.changes]);
  await applyEntries(tx, entries, now, undefined, books.writes(entries, now));
}

export interface BalanceView extends CreditBalance {
  hasCredits: boolean;
  policy: CreditPolicy;
  lowThreshold?: Dec;
  overage: Dec;
  overagePeriodStart: string;
  ledgerBalance: Dec;
}

const GRANT_FIELDS: Record<keyof ReturnType<typeof grantContent>, string> = {
  u: 'user_id',
  k: 'kind',
  a: 'amount',
  p: 'priority',
  e: 'effective_time',
  x: 'expire_time',
  r: 'reason',
  w: 'actor',
};

/**
 * CreateGrant, VoidGrant, ListGrants, GetBalance, ListBalanceEntries,
 * SetCreditPolicy, and the grant expiry sweeper. Burning is part of
 * RecordCharge (ChargesService) and re-rating (RerateService); holds are part
 * of CheckLimits (LimitsService) and end with the reservation
 * (ChargesService, ReservationsService).
 */
export class CreditsService {
  constructor(
    private readonly db: Db,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  async createGrant(raw: CreateGrantInput): Promise<{ grant: Grant; replayed: boolean; now: Date }> {
    const now = this.clock();
    const input = validateCreateGrant(raw, now);
    const content = grantContent(input);
    // effective_time defaults to now, so a retry without one would differ: it is compared only when given.
    const requestHash = createHash('sha256').update(canonicalJson({ ...content, e: raw.effectiveTime ? content.e : null })).digest('base64url');
    return inTransaction(this.db, async (tx) => {
      // The account's credit row first (a new one moves the settings epoch: every process's
      // cache then knows that this account's charges burn credits), then the lock order.
      await ensureCreditAccount(tx, input.accountId, now);
      const books = await Books.open(tx, [input.accountId], now);
      const grant: Grant = { ...input, grantId: randomUUID(), createTime: now, spent: new Dec(0), held: new Dec(0), expired: new Dec(0), voided: new Dec(0), requestHash };
      if (!(await insertGrant(tx, grant))) {
        const stored = await findGrantByKey(tx, input.accountId, input.idempotencyKey);
        if (!stored) throw new ConflictRetryError();
        const was = grantContent(stored);
        const differs = (Object.keys(GRANT_FIELDS) as Array<keyof typeof GRANT_FIELDS>).filter((k) => (k !== 'e' || raw.effectiveTime !== undefined) && was[k] !== content[k]).map((k) => GRANT_FIELDS[k]);
        if (differs.length) throw new IdempotencyConflictError(input.idempotencyKey, differs, 'a grant');
        return { grant: grantAsSeen(stored, now), replayed: true, now };
      }
      const book = books.get(input.accountId) as CreditBook;
      book.created(grant);
      await applyBooks(tx, books, now);
      return { grant, replayed: false, now };
    });
  }

  async voidGrant(raw: { accountId: string; grantId: string; reason: string; actor: string }): Promise<{ grant: Grant; now: Date }> {
    const q = validateVoidGrant(raw);
    const now = this.clock();
    return inTransaction(this.db, async (tx) => {
      const books = await Books.open(tx, [q.accountId], now, [q.grantId]);
      const book = books.get(q.accountId);
      if (!book) throw new GrantNotFoundError(q.grantId);
      const grant = book.void(q.grantId, now, q.reason, q.actor);
      await applyBooks(tx, books, now);
      return { grant, now };
    });
  }

  async listGrants(raw: { accountId: string; pageSize: number; pageToken: string }): Promise<{ grants: Grant[]; nextPageToken: string; now: Date }> {
    const q = validateCreditPage('grants', raw);
    const [createTime, grantId] = q.after?.split('|') ?? [];
    const now = this.clock();
    const page = await read(() => listGrants(this.db, q.accountId, q.pageSize, q.after ? { createTime, grantId } : undefined));
    const grants = page.slice(0, q.pageSize).map((g) => grantAsSeen(g, now));
    const last = grants[grants.length - 1];
    return { grants, now, nextPageToken: page.length > q.pageSize ? encodeCreditPageToken('grants', q.accountId, `${last.createTime.toISOString()}|${last.grantId}`) : '' };
  }

  /** The balance now: grants past their expiry read as expired (lazy expiry) before the sweeper writes their expiry. */
  async getBalance(raw: { accountId: string; userId: string }): Promise<BalanceView> {
    const q = validateGetBalance(raw);
    const now = this.clock();
    const zone = (await read(() => readAccount(this.db, q.accountId)))?.timeZone ?? DEFAULT_TIME_ZONE;
    const month = monthStart(localDay(now, zone));
    const state = await read(() => readCredits(this.db, q.accountId, month));
    const base = balanceOf(q.accountId, state?.grants ?? [], now, q.userId);
    return {
      ...base,
      hasCredits: state !== undefined,
      policy: state?.account.policy ?? DEFAULT_CREDIT_POLICY,
      ...(state?.account.lowThreshold ? { lowThreshold: state.account.lowThreshold } : {}),
      overage: state?.overage ?? new Dec(0),
      overagePeriodStart: month,
      ledgerBalance: state?.account.balance ?? new Dec(0),
    };
  }

  async listBalanceEntries(raw: { accountId: string; pageSize: number; pageToken: string }): Promise<{ entries: BalanceEntry[]; nextPageToken: string }> {
    const q = validateCreditPage('entries', raw);
    const page = await read(() => listBalanceEntries(this.db, q.accountId, BigInt(q.after ?? '0'), q.pageSize));
    const entries = page.slice(0, q.pageSize);
    const last = entries[entries.length - 1];
    // The last page ends with a token too when it is full, so a reader can poll for newer entries.
    return { entries, nextPageToken: page.length > q.pageSize ? encodeCreditPageToken('entries', q.accountId, last.sequence.toString()) : '' };
  }

  async setCreditPolicy(raw: { accountId: string; policy: number; lowBalanceThreshold?: { amount: string; currencyCode: string } }): Promise<BalanceView> {
    const q = validateSetCreditPolicy(raw);
    await inTransaction(this.db, (tx) => upsertCreditPolicy(tx, q.accountId, q.policy, q.lowThreshold, this.clock()));
    return this.getBalance({ accountId: q.accountId, userId: '' });
  }

  /** The expiry sweeper: releases the remainder of every grant past its expiry, one transaction per account; returns how many grants expired. */
  async expireAllDue(): Promise<number> {
    let total = 0;
    for (;;) {
      const now = this.clock();
      const accounts = await read(() => accountsWithDueGrants(this.db, now, 100));
      for (const accountId of accounts) {
        total += await inTransaction(this.db, async (tx) => {
          const books = await Books.open(tx, [accountId], now);
          const n = books.changes.filter((c) => c.kind === 'grant_expired').length;
          if (n) await applyBooks(tx, books, now);
          return n;
        });
      }
      if (accounts.length < 100) return total;
    }
  }
}
