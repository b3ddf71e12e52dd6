import { Account, AccountSummary, DEFAULT_TIME_ZONE, encodeAccountPageToken, localDay, monthStart, validateAccountId, validateListAccounts, validateSetAccount } from '@metering/domain';
import { Dec } from '@metering/pricing';
import { listAccounts, readAccount, readMonthCounters, upsertAccount } from '../store/accounts.repo';
import { Db, inTransaction, read } from '../store/db';

/** SetAccount, GetAccount and ListAccounts: account settings (the time zone its days and months follow). */
export class AccountsService {
  constructor(
    private readonly db: Db,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  async setAccount(raw: { accountId: string; timeZone: string }): Promise<Account> {
    const account = validateSetAccount(raw);
    const stored = await inTransaction(this.db, (tx) => upsertAccount(tx, account.accountId, account.timeZone));
    return { accountId: account.accountId, timeZone: stored.timeZone, updateTime: stored.updatedAt };
  }

  async getAccount(raw: { accountId: string }): Promise<Account> {
    const accountId = validateAccountId(raw);
    const stored = await read(() => readAccount(this.db, accountId));
    return { accountId, timeZone: stored?.timeZone ?? DEFAULT_TIME_ZONE, updateTime: stored?.updatedAt };
  }

  /** ListAccounts: a page of every account the service knows, each with its month to date in its own time zone. */
  async list(raw: { accountIdPrefix: string; pageSize: number; pageToken: string }): Promise<{ accounts: AccountSummary[]; nextPageToken: string }> {
    const q = validateListAccounts(raw);
    const now = this.clock();
    return read(async () => {
      const found = await listAccounts(this.db, q);
      const page = found.slice(0, q.pageSize).map((a) => {
        const timeZone = a.timeZone ?? DEFAULT_TIME_ZONE;
        return { account: { accountId: a.accountId, timeZone, updateTime: a.updatedAt }, monthStart: monthStart(localDay(now, timeZone)) };
      });
      const counters = await readMonthCounters(this.db, page.map((p) => ({ accountId: p.account.accountId, monthStart: p.monthStart })));
      const accounts = page.map((p) => {
        const month = counters.get(p.account.accountId);
        return { ...p, monthMessageCount: month?.messages ?? 0n, monthUnpricedMessageCount: month?.unpriced ?? 0n, monthCost: month?.cost ?? new Dec(0) };
      });
      return { accounts, nextPageToken: found.length > q.pageSize ? encodeAccountPageToken(q, page[page.length - 1].account.accountId) : '' };
    });
  }
}
