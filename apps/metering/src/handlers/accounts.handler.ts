import { Account as PbAccount, GetAccountRequest, GetAccountResponse, ListAccountsRequest, ListAccountsResponse, SetAccountRequest, SetAccountResponse } from '@metering/contracts';
import { Account } from '@metering/domain';
import { AccountsService } from '../services/accounts.service';
import { toProtoMoney, toProtoTimestamp } from './convert';

/** SetAccount, GetAccount and ListAccounts: wire -> service -> wire. */

const toProtoAccount = (a: Account): PbAccount => ({ accountId: a.accountId, timeZone: a.timeZone, updateTime: a.updateTime ? toProtoTimestamp(a.updateTime) : undefined });

export const setAccountHandler =
  (service: AccountsService) =>
  async (req: SetAccountRequest): Promise<SetAccountResponse> => ({ account: toProtoAccount(await service.setAccount(req)) });

export const getAccountHandler =
  (service: AccountsService) =>
  async (req: GetAccountRequest): Promise<GetAccountResponse> => ({ account: toProtoAccount(await service.getAccount(req)) });

export const listAccountsHandler =
  (service: AccountsService) =>
  async (req: ListAccountsRequest): Promise<ListAccountsResponse> => {
    const page = await service.list(req);
    return {
      accounts: page.accounts.map((a) => ({
        account: toProtoAccount(a.account),
        monthStart: a.monthStart,
        monthMessageCount: a.monthMessageCount.toString(),
        monthCost: toProtoMoney(a.monthCost),
        monthUnpricedMessageCount: a.monthUnpricedMessageCount.toString(),
      })),
      nextPageToken: page.nextPageToken,
    };
  };
