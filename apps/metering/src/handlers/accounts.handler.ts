import { Account as PbAccount, GetAccountRequest, GetAccountResponse, SetAccountRequest, SetAccountResponse } from '@metering/contracts';
import { Account } from '@metering/domain';
import { AccountsService } from '../services/accounts.service';
import { toProtoTimestamp } from './convert';

/** SetAccount and GetAccount: wire -> service -> wire. */

const toProtoAccount = (a: Account): PbAccount => ({ accountId: a.accountId, timeZone: a.timeZone, updateTime: a.updateTime ? toProtoTimestamp(a.updateTime) : undefined });

export const setAccountHandler =
  (service: AccountsService) =>
  async (req: SetAccountRequest): Promise<SetAccountResponse> => ({ account: toProtoAccount(await service.setAccount(req)) });

export const getAccountHandler =
  (service: AccountsService) =>
  async (req: GetAccountRequest): Promise<GetAccountResponse> => ({ account: toProtoAccount(await service.getAccount(req)) });
