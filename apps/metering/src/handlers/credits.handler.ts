import {
  BalanceEntry as PbBalanceEntry,
  BalanceEntryKind,
  CreateGrantRequest,
  CreateGrantResponse,
  CreditBalance as PbCreditBalance,
  CreditPolicy as PbCreditPolicy,
  GetBalanceRequest,
  GetBalanceResponse,
  Grant as PbGrant,
  GrantKind as PbGrantKind,
  GrantStatus as PbGrantStatus,
  ListBalanceEntriesRequest,
  ListBalanceEntriesResponse,
  ListGrantsRequest,
  ListGrantsResponse,
  SetCreditPolicyRequest,
  SetCreditPolicyResponse,
  VoidGrantRequest,
  VoidGrantResponse,
} from '@metering/contracts';
import { BalanceEntry, BalanceEntryKind as Kind, BalanceNotice, CreditPolicy, Grant, grantStatus, GrantStatus, remainingOf } from '@metering/domain';
import { BalanceView, CreditsService } from '../services/credits.service';
import { toProtoMoney, toProtoTimestamp } from './convert';

/** CreateGrant, VoidGrant, ListGrants, GetBalance, ListBalanceEntries, SetCreditPolicy: wire -> service -> wire. */

const KIND = { paid: PbGrantKind.GRANT_KIND_PAID, promotional: PbGrantKind.GRANT_KIND_PROMOTIONAL };
const POLICY: Record<CreditPolicy, PbCreditPolicy> = { deny: PbCreditPolicy.CREDIT_POLICY_DENY, allow_overage: PbCreditPolicy.CREDIT_POLICY_ALLOW_OVERAGE };
const STATUS: Record<GrantStatus, PbGrantStatus> = {
  scheduled: PbGrantStatus.GRANT_STATUS_SCHEDULED,
  active: PbGrantStatus.GRANT_STATUS_ACTIVE,
  exhausted: PbGrantStatus.GRANT_STATUS_EXHAUSTED,
  expired: PbGrantStatus.GRANT_STATUS_EXPIRED,
  voided: PbGrantStatus.GRANT_STATUS_VOIDED,
};
const ENTRY: Record<Kind, BalanceEntryKind> = {
  grant: BalanceEntryKind.BALANCE_ENTRY_KIND_GRANT,
  burn: BalanceEntryKind.BALANCE_ENTRY_KIND_BURN,
  hold: BalanceEntryKind.BALANCE_ENTRY_KIND_HOLD,
  hold_released: BalanceEntryKind.BALANCE_ENTRY_KIND_HOLD_RELEASED,
  expiry: BalanceEntryKind.BALANCE_ENTRY_KIND_EXPIRY,
  void: BalanceEntryKind.BALANCE_ENTRY_KIND_VOID,
  refund: BalanceEntryKind.BALANCE_ENTRY_KIND_REFUND,
  overage: BalanceEntryKind.BALANCE_ENTRY_KIND_OVERAGE,
};

export const toProtoGrant = (g: Grant, now: Date): PbGrant => ({
  accountId: g.accountId,
  grantId: g.grantId,
  idempotencyKey: g.idempotencyKey,
  userId: g.userId,
  kind: KIND[g.kind],
  amount: toProtoMoney(g.amount),
  priority: g.priority,
  effectiveTime: toProtoTimestamp(g.effectiveTime),
  expireTime: g.expireTime ? toProtoTimestamp(g.expireTime) : undefined,
  reason: g.reason,
  actor: g.actor,
  createTime: toProtoTimestamp(g.createTime),
  remaining: toProtoMoney(remainingOf(g)),
  held: toProtoMoney(g.held),
  spent: toProtoMoney(g.spent),
  expired: toProtoMoney(g.expired),
  voided: toProtoMoney(g.voided),
  status: STATUS[grantStatus(g, now)],
  voidTime: g.voidTime ? toProtoTimestamp(g.voidTime) : undefined,
});

const toProtoBalance = (b: BalanceView): PbCreditBalance => ({
  accountId: b.accountId,
  userId: b.userId,
  hasCredits: b.hasCredits,
  policy: POLICY[b.policy],
  available: toProtoMoney(b.available),
  remaining: toProtoMoney(b.remaining),
  held: toProtoMoney(b.held),
  upcoming: toProtoMoney(b.upcoming),
  upcomingExpiries: b.upcomingExpiries.map((e) => ({ grantId: e.grantId, expireTime: toProtoTimestamp(e.expireTime), amount: toProtoMoney(e.amount) })),
  lowBalanceThreshold: b.lowThreshold ? toProtoMoney(b.lowThreshold) : undefined,
  overage: toProtoMoney(b.overage),
  overagePeriodStart: b.overagePeriodStart,
  ledgerBalance: toProtoMoney(b.ledgerBalance),
});

/** The balance of a BALANCE_LOW / BALANCE_EXHAUSTED event: available and the threshold (the rest unset). */
export const toProtoBalanceNotice = (n: BalanceNotice): PbCreditBalance =>
  PbCreditBalance.fromPartial({ accountId: n.accountId, hasCredits: true, available: toProtoMoney(n.available), lowBalanceThreshold: n.threshold ? toProtoMoney(n.threshold) : undefined });

const toProtoEntry = (e: BalanceEntry): PbBalanceEntry => ({
  accountId: e.accountId,
  sequence: e.sequence.toString(),
  kind: ENTRY[e.kind],
  entryTime: toProtoTimestamp(e.at),
  grantId: e.grantId,
  amount: toProtoMoney(e.amount),
  balanceAfter: toProtoMoney(e.balanceAfter),
  chargeId: e.chargeId ?? '',
  reservationId: e.reservationId ?? '',
});

export const createGrantHandler =
  (service: CreditsService) =>
  async (req: CreateGrantRequest): Promise<CreateGrantResponse> => {
    const { grant, replayed, now } = await service.createGrant(req);
    return { grant: toProtoGrant(grant, now), replayed };
  };

export const voidGrantHandler =
  (service: CreditsService) =>
  async (req: VoidGrantRequest): Promise<VoidGrantResponse> => {
    const { grant, now } = await service.voidGrant(req);
    return { grant: toProtoGrant(grant, now) };
  };

export const listGrantsHandler =
  (service: CreditsService) =>
  async (req: ListGrantsRequest): Promise<ListGrantsResponse> => {
    const { grants, now, nextPageToken } = await service.listGrants(req);
    return { grants: grants.map((g) => toProtoGrant(g, now)), nextPageToken };
  };

export const getBalanceHandler =
  (service: CreditsService) =>
  async (req: GetBalanceRequest): Promise<GetBalanceResponse> => ({ balance: toProtoBalance(await service.getBalance(req)) });

export const listBalanceEntriesHandler =
  (service: CreditsService) =>
  async (req: ListBalanceEntriesRequest): Promise<ListBalanceEntriesResponse> => {
    const { entries, nextPageToken } = await service.listBalanceEntries(req);
    return { entries: entries.map(toProtoEntry), nextPageToken };
  };

export const setCreditPolicyHandler =
  (service: CreditsService) =>
  async (req: SetCreditPolicyRequest): Promise<SetCreditPolicyResponse> => ({ balance: toProtoBalance(await service.setCreditPolicy(req)) });
