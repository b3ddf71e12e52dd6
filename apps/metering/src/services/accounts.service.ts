import { Account, DEFAULT_TIME_ZONE, validateAccountId, validateSetAccount } from '@metering/domain';
import { Db, inTransaction, read } from '../store/db';
import { readAccount, upsertAccount } from '../store/limits.repo';

/** SetAccount and GetAccount: account settings (the time zone its days and months follow). */
export class AccountsService {
  constructor(private readonly db: Db) {}

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
}
