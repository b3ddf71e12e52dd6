import { remainingOf, type BalanceEntry, type BalanceEntryKind, type CreditAccount, type CreditPolicy, type CreditWrites, type Grant, type GrantKind, type StandingBelow } from '@metering/domain';
import { Dec } from '@metering/pricing';
import { fromRuleRow } from './alerts.repo';
import { updatedAccounts } from './citus';
import { Db, statement, Tx } from './db';
import { bumpSettingsEpoch } from './settings-epoch.repo';

/**
 * SQL of prepaid credits (migration 20261202100000_credits): credit_accounts,
 * credit_grants, credit_entries, credit_overage and reservations.credit_holds.
 * No business rules (libs/domain/src/credits.ts has them). Lock order, shared
 * with the ledger (docs/architecture.md): reservations -> charges ->
 * credit_accounts (account order) -> credit_grants (account, grant id) ->
 * credit_overage -> daily_usage -> usage_counters -> the outbox.
 */

/** A grant as one JSON object, every amount as text (a JSON number would lose digits). */
const GRANT_JSON = (g: string) => `json_build_object(
    'account_id', ${g}.account_id, 'grant_id', ${g}.grant_id, 'idempotency_key', ${g}.idempotency_key, 'user_id', ${g}.user_id, 'kind', ${g}.kind,
    'amount', ${g}.amount::text, 'priority', ${g}.priority, 'effective_time', ${g}.effective_time, 'expire_time', ${g}.expire_time,
    'reason', ${g}.reason, 'actor', ${g}.actor, 'request_hash', ${g}.request_hash, 'create_time', ${g}.create_time,
    'spent', ${g}.spent::text, 'held', ${g}.held::text, 'expired', ${g}.expired::text, 'voided', ${g}.voided::text,
    'void_time', ${g}.void_time, 'void_reason', ${g}.void_reason, 'void_actor', ${g}.void_actor)::text`;

const ACCOUNT_JSON = (a: string) => `json_build_object('account_id', ${a}.account_id, 'policy', ${a}.policy, 'low_threshold', ${a}.low_threshold::text,
    'balance', ${a}.balance::text, 'last_entry', ${a}.last_entry::text, 'balance_alerts', ${a}.balance_alerts)::text`;

/** Grants that can still move: something remains (holds included). */
const OPEN = (g: string) => `${g}.amount > ${g}.spent + ${g}.expired + ${g}.voided`;

interface GrantJson {
  account_id: string;
  grant_id: string;
  idempotency_key: string;
  user_id: string;
  kind: GrantKind;
  amount: string;
  priority: number;
  effective_time: string;
  expire_time: string | null;
  reason: string;
  actor: string;
  request_hash: string;
  create_time: string;
  spent: string;
  held: string;
  expired: string;
  voided: string;
  void_time: string | null;
  void_reason: string | null;
  void_actor: string | null;
}

export function fromGrantJson(text: string | GrantJson): Grant {
  const r: GrantJson = typeof text === 'string' ? JSON.parse(text) : text;
  return {
    accountId: r.account_id,
    grantId: r.grant_id,
    idempotencyKey: r.idempotency_key,
    userId: r.user_id,
    kind: r.kind,
    amount: new Dec(r.amount),
    priority: Number(r.priority),
    effectiveTime: new Date(r.effective_time),
    ...(r.expire_time ? { expireTime: new Date(r.expire_time) } : {}),
    reason: r.reason,
    actor: r.actor,
    requestHash: r.request_hash,
    createTime: new Date(r.create_time),
    spent: new Dec(r.spent),
    held: new Dec(r.held),
    expired: new Dec(r.expired),
    voided: new Dec(r.voided),
    ...(r.void_time ? { voidTime: new Date(r.void_time), voidReason: r.void_reason ?? '', voidActor: r.void_actor ?? '' } : {}),
  };
}

/** A grant as the outbox stores it (amounts as text). */
export const toGrantJson = (g: Grant): GrantJson => ({
  account_id: g.accountId,
  grant_id: g.grantId,
  idempotency_key: g.idempotencyKey,
  user_id: g.userId,
  kind: g.kind,
  amount: g.amount.toFixed(),
  priority: g.priority,
  effective_time: g.effectiveTime.toISOString(),
  expire_time: g.expireTime?.toISOString() ?? null,
  reason: g.reason,
  actor: g.actor,
  request_hash: g.requestHash,
  create_time: g.createTime.toISOString(),
  spent: g.spent.toFixed(),
  held: g.held.toFixed(),
  expired: g.expired.toFixed(),
  voided: g.voided.toFixed(),
  void_time: g.voidTime?.toISOString() ?? null,
  void_reason: g.voidReason ?? null,
  void_actor: g.voidActor ?? null,
});

function fromAccountJson(text: string): CreditAccount {
  const r = JSON.parse(text) as { account_id: string; policy: CreditPolicy; low_threshold: string | null; balance: string; last_entry: string; balance_alerts?: StandingBelow | null };
  return {
    accountId: r.account_id,
    policy: r.policy,
    ...(r.low_threshold != null ? { lowThreshold: new Dec(r.low_threshold) } : {}),
    balance: new Dec(r.balance),
    lastEntry: BigInt(r.last_entry),
    standingBelow: r.balance_alerts ?? {},
  };
}

/** Creates an account's credit row (policy deny) unless it exists. Only a new row moves the settings epoch. */
export async function ensureCreditAccount(tx: Tx, accountId: string, now: Date): Promise<void> {
  const { rows } = await tx.raw('INSERT INTO credit_accounts (account_id, updated_at) VALUES (?, ?) ON CONFLICT (account_id) DO NOTHING RETURNING 1 AS created', [accountId, now]);
  if (rows.length > 0) await bumpSettingsEpoch(tx);
}

/** Sets an account's policy and threshold (creating its row). */
export async function upsertCreditPolicy(tx: Tx, accountId: string, policy: CreditPolicy, lowThreshold: Dec | undefined, now: Date): Promise<void> {
  const { rows } = await tx.raw(
    `INSERT INTO credit_accounts AS a (account_id, policy, low_threshold, updated_at) VALUES (?, ?, ?::numeric, ?)
     ON CONFLICT (account_id) DO UPDATE SET policy = excluded.policy, low_threshold = excluded.low_threshold, updated_at = excluded.updated_at
     RETURNING (xmax = 0) AS created`,
    [accountId, policy, lowThreshold?.toFixed() ?? null, now],
  );
  if ((rows as Array<{ created: boolean }>)[0]?.created) await bumpSettingsEpoch(tx);
}

const LOCK_CREDITS_SQL = `WITH acc AS (
    SELECT a.* FROM credit_accounts a WHERE a.account_id = ? FOR UPDATE
  ), grants AS (
    SELECT g.* FROM credit_grants g
     WHERE g.account_id = ? AND EXISTS (SELECT 1 FROM acc) AND (${OPEN('g')} OR g.grant_id = ANY(?::uuid[]))
     ORDER BY g.grant_id FOR UPDATE
  )
  SELECT 'account' AS kind, ${ACCOUNT_JSON('acc')} AS row FROM acc
  UNION ALL
  SELECT 'grant', ${GRANT_JSON('grants')} FROM grants
  UNION ALL
  SELECT 'rule', json_build_object('account_id', r.account_id, 'rule_id', r.rule_id, 'description', r.description, 'kind', r.kind, 'spec', r.spec,
           'created_at', r.created_at, 'updated_at', r.updated_at)::text
    FROM alert_rules r WHERE r.account_id = ? AND EXISTS (SELECT 1 FROM acc) AND r.kind = 'balance'`;

type Locked = { accounts: Map<string, CreditAccount>; grants: Grant[] };

/** Whether the grants read agree with each account's running balance: balance = the sum of remaining - held over its open grants (a closed grant adds 0). */
const consistent = ({ accounts, grants }: Locked): boolean =>
  [...accounts.values()].every((a) =>
    grants
      .filter((g) => g.accountId === a.accountId)
      .reduce((sum, g) => sum.plus(remainingOf(g)).minus(g.held), new Dec(0))
      .equals(a.balance),
  );

/**
/**
 * Locks the credit rows of accounts, in the lock order: account by account (id
 * order), its credit_accounts row, then its open grants and any named ones
 * (grant id order), and reads its BALANCE alert rules (CreditAccount.balanceRules;
 * what stands of them is on the credit row). One statement per account,
 * filtered on account_id equality (on Citus a row lock routes to one shard).
 * Accounts without a row return nothing.
 *
 * A lock that waited gives the newest version of the rows it locks, but the
 * rest of the statement reads its snapshot, taken before the wait: a grant
 * that the transaction it waited for inserted (CreateGrant), or reopened
 * (a refund to a spent grant), is not in it. The credit row's running
 * balance is always the newest, so a read whose grants do not add up to it
 * is run again, once: the locks are held by then, and the new snapshot has
 * everything committed before them (one more round trip, only after such a wait).
 */
export async function lockCredits(tx: Tx, accountIds: string[], grantIds: string[] = []): Promise<Locked> {
  const lockOne = async (accountId: string): Promise<Locked> => {
    const { rows } = await statement(tx, 'lock_credits', LOCK_CREDITS_SQL, [accountId, accountId, grantIds, accountId]);
    const all = rows as Array<{ kind: string; row: string }>;
    const rules = all.filter((r) => r.kind === 'rule').map((r) => fromRuleRow(JSON.parse(r.row)));
    const accounts = all.filter((r) => r.kind === 'account').map((r): CreditAccount => {
      const a = fromAccountJson(r.row);
      return rules.length ? { ...a, balanceRules: rules } : a;
    });
    return { accounts: new Map(accounts.map((a) => [a.accountId, a])), grants: all.filter((r) => r.kind === 'grant').map((r) => fromGrantJson(r.row)) };
  };
  const locked: Locked = { accounts: new Map(), grants: [] };
  for (const accountId of [...new Set(accountIds)].sort()) {
    const first = await lockOne(accountId);
    const one = consistent(first) ? first : await lockOne(accountId);
    for (const [id, a] of one.accounts) locked.accounts.set(id, a);
    locked.grants.push(...one.grants);
  }
  return locked;
}

/**
 * Inserts a grant unless its idempotency key is taken (then false; a
 * concurrent insert of the key waits for the other transaction).
 */
export async function insertGrant(tx: Tx, g: Grant): Promise<boolean> {
  const { rows } = await tx.raw(
    `INSERT INTO credit_grants (account_id, grant_id, idempotency_key, user_id, kind, amount, priority, effective_time, expire_time, reason, actor, request_hash, create_time)
       VALUES (?, ?, ?, ?, ?, ?::numeric, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (account_id, idempotency_key) DO NOTHING RETURNING grant_id`,
    [g.accountId, g.grantId, g.idempotencyKey, g.userId, g.kind, g.amount.toFixed(), g.priority, g.effectiveTime, g.expireTime ?? null, g.reason, g.actor, g.requestHash, g.createTime],
  );
  return rows.length === 1;
}

export async function findGrantByKey(db: Db | Tx, accountId: string, idempotencyKey: string): Promise<Grant | undefined> {
  const { rows } = await db.raw(`SELECT ${GRANT_JSON('g')} AS row FROM credit_grants g WHERE g.account_id = ? AND g.idempotency_key = ?`, [accountId, idempotencyKey]);
  return rows.length ? fromGrantJson((rows as Array<{ row: string }>)[0].row) : undefined;
}

export type { CreditWrites };

/**
 * The credit writes as data-modifying CTEs inside the ledger's one apply
 * statement (ledger.repo.ts puts them after the reservations that finish and
 * before daily_usage, as the lock order says), each made to run after the one
 * before by a condition on it, the first after `after`: account heads, grants
 * (key order), overage (key order), reservations' holds, then the balance
 * entries (the last is `credit_entries_added`). Five parameters, each a JSON array
 * (creditParams), in that order. The rows were locked by lockCredits (the
 * reservations by their own insert or lock); credit_overage is locked here.
 * `chained` false leaves the conditions out (Citus, which runs the CTEs one
 * after the other in this order anyway: ledger.repo.ts, APPLY_CTES).
 */
export const CREDIT_CTES = (after: string, chained = true) => `credit_heads AS (
       UPDATE credit_accounts a SET balance = u.balance, last_entry = u.last_entry, balance_alerts = coalesce(u.balance_alerts, a.balance_alerts), updated_at = u.updated_at
         FROM json_populate_recordset(NULL::credit_accounts, ?::json) u WHERE ${updatedAccounts('a', chained)} AND a.account_id = u.account_id AND ${after}
       RETURNING 1
     ), credit_grants_moved AS (
       UPDATE credit_grants g SET spent = g.spent + u.spent, held = g.held + u.held, expired = g.expired + u.expired, voided = g.voided + u.voided,
              void_time = coalesce(g.void_time, u.void_time), void_reason = coalesce(g.void_reason, u.void_reason), void_actor = coalesce(g.void_actor, u.void_actor)
         FROM json_populate_recordset(NULL::credit_grants, ?::json) u
        WHERE ${updatedAccounts('g', chained)} AND g.account_id = u.account_id AND g.grant_id = u.grant_id AND ${chained ? '(SELECT count(*) FROM credit_heads) >= 0' : 'TRUE'}
       RETURNING 1
     ), credit_overage_moved AS (
       INSERT INTO credit_overage AS o (account_id, period_start, amount, updated_at)
         SELECT account_id, period_start, amount, updated_at FROM json_populate_recordset(NULL::credit_overage, ?::json) WHERE ${chained ? '(SELECT count(*) FROM credit_grants_moved) >= 0' : 'TRUE'}
       ON CONFLICT (account_id, period_start) DO UPDATE SET amount = o.amount + excluded.amount, updated_at = excluded.updated_at
       RETURNING 1
     ), credit_holds_placed AS (
       UPDATE reservations r SET credit_holds = u.credit_holds
         FROM json_populate_recordset(NULL::reservations, ?::json) u
        WHERE ${updatedAccounts('r', chained)} AND r.account_id = u.account_id AND r.reservation_id = u.reservation_id AND ${chained ? '(SELECT count(*) FROM credit_overage_moved) >= 0' : 'TRUE'}
       RETURNING 1
     ), credit_entries_added AS (
       INSERT INTO credit_entries (account_id, sequence, kind, entry_time, grant_id, amount, balance_after, charge_id, reservation_id)
         SELECT account_id, sequence, kind, entry_time, grant_id, amount, balance_after, charge_id, reservation_id
           FROM json_populate_recordset(NULL::credit_entries, ?::json) WHERE ${chained ? '(SELECT count(*) FROM credit_holds_placed) >= 0' : 'TRUE'}
       RETURNING 1
     )`;

/**
 * The eight parameters of CREDIT_CTES: five JSON arrays (empty without credit writes: an account
 * without credits writes nothing there), the three UPDATEs' each followed by `accounts`, the
 * batch's accounts (account_id = ANY(accounts): on Citus the UPDATEs then prune to those accounts'
 * shards instead of running on every shard).
 */
export function creditParams(w: CreditWrites | undefined, now: Date, accounts: string[]): Array<string | string[]> {
  if (!w) return ['[]', accounts, '[]', accounts, '[]', '[]', accounts, '[]'];
  const c = w.credits;
  return [
    JSON.stringify(
      w.accounts.map((a) => ({ account_id: a.accountId, balance: a.balance.toFixed(), last_entry: a.lastEntry.toString(), balance_alerts: a.standingBelow ?? null, updated_at: now })),
    ),
    accounts,
    JSON.stringify(
      c.grants.map((g) => ({
        account_id: g.accountId, grant_id: g.grantId, spent: g.spent.toFixed(), held: g.held.toFixed(), expired: g.expired.toFixed(), voided: g.voided.toFixed(),
        void_time: g.voidTime ?? null, void_reason: g.voidTime ? (g.voidReason ?? '') : null, void_actor: g.voidTime ? (g.voidActor ?? '') : null,
      })),
    ),
    accounts,
    JSON.stringify(c.overage.map((o) => ({ account_id: o.accountId, period_start: o.periodStart, amount: o.amount.toFixed(), updated_at: now }))),
    JSON.stringify(c.holds.map((h) => ({ account_id: h.accountId, reservation_id: h.reservationId, credit_holds: h.holds.map((x) => ({ grant_id: x.grantId, amount: x.amount.toFixed() })) }))),
    accounts,
    JSON.stringify(
      w.entries.map((e) => ({
        account_id: e.accountId, sequence: e.sequence.toString(), kind: e.kind, entry_time: e.at, grant_id: e.grantId || null, amount: e.amount.toFixed(),
        balance_after: e.balanceAfter.toFixed(), charge_id: e.chargeId ?? null, reservation_id: e.reservationId ?? null,
      })),
    ),
  ];
}

/**
 * What the reads of an account's credits see, in one round trip, without
 * locks: its credit row, its open grants (all of them with `allGrants`), and
 * its overage of one month. Undefined when the account has no credits.
 */
export async function readCredits(db: Db | Tx, accountId: string, month: string): Promise<{ account: CreditAccount; grants: Grant[]; overage: Dec } | undefined> {
  const { rows } = await db.raw(
    `SELECT 'account' AS kind, ${ACCOUNT_JSON('a')} AS row FROM credit_accounts a WHERE a.account_id = ?
     UNION ALL
     SELECT 'grant', ${GRANT_JSON('g')} FROM credit_grants g WHERE g.account_id = ? AND ${OPEN('g')}
     UNION ALL
     SELECT 'overage', o.amount::text FROM credit_overage o WHERE o.account_id = ? AND o.period_start = ?::date`,
    [accountId, accountId, accountId, month],
  );
  const all = rows as Array<{ kind: string; row: string }>;
  const account = all.find((r) => r.kind === 'account');
  if (!account) return undefined;
  return {
    account: fromAccountJson(account.row),
    grants: all.filter((r) => r.kind === 'grant').map((r) => fromGrantJson(r.row)),
    overage: new Dec(all.find((r) => r.kind === 'overage')?.row ?? 0),
  };
}

/**
 * The part of the CheckLimits read that gives an account's credits: one row
 * (absent without credits) whose text is a JSON object of the policy and the
 * open grants; two parameters, the account twice (both filters on account_id equality: one
 * shard on Citus). CHECK_STATE_SQL in limits.repo.ts adds it to its one round trip.
 */
export const CHECK_CREDITS_SQL = `SELECT 'credits' AS kind, json_build_object('policy', a.policy,
      'grants', (SELECT coalesce(json_agg(${GRANT_JSON('g')}), '[]') FROM credit_grants g WHERE g.account_id = ? AND ${OPEN('g')}))::text AS user_id
    FROM credit_accounts a WHERE a.account_id = ?`;

export function fromCheckCredits(text: string): { policy: CreditPolicy; grants: Grant[] } {
  const r = JSON.parse(text) as { policy: CreditPolicy; grants: string[] };
  return { policy: r.policy, grants: r.grants.map(fromGrantJson) };
}

/** A page of an account's grants, oldest first (one extra row tells whether more follow). */
export async function listGrants(db: Db, accountId: string, pageSize: number, after?: { createTime: string; grantId: string }): Promise<Grant[]> {
  const { rows } = await db.raw(
    `SELECT ${GRANT_JSON('g')} AS row FROM credit_grants g
      WHERE g.account_id = ? AND (?::timestamptz IS NULL OR (g.create_time, g.grant_id) > (?::timestamptz, ?::uuid))
      ORDER BY g.create_time, g.grant_id LIMIT ?`,
    [accountId, after?.createTime ?? null, after?.createTime ?? null, after?.grantId ?? null, pageSize + 1],
  );
  return (rows as Array<{ row: string }>).map((r) => fromGrantJson(r.row));
}

interface EntryRow {
  account_id: string;
  sequence: string;
  kind: BalanceEntryKind;
  entry_time: Date;
  grant_id: string | null;
  amount: string;
  balance_after: string;
  charge_id: string | null;
  reservation_id: string | null;
}

const fromEntryRow = (r: EntryRow): BalanceEntry => ({
  accountId: r.account_id,
  sequence: BigInt(r.sequence),
  kind: r.kind,
  at: new Date(r.entry_time),
  grantId: r.grant_id ?? '',
  amount: new Dec(r.amount),
  balanceAfter: new Dec(r.balance_after),
  ...(r.charge_id ? { chargeId: r.charge_id } : {}),
  ...(r.reservation_id ? { reservationId: r.reservation_id } : {}),
});

/** A page of an account's balance entries after a sequence (one extra row tells whether more follow). */
export async function listBalanceEntries(db: Db, accountId: string, after: bigint, pageSize: number): Promise<BalanceEntry[]> {
  const { rows } = await db.raw(
    `SELECT account_id, sequence::text AS sequence, kind, entry_time, grant_id::text AS grant_id, amount::text AS amount, balance_after::text AS balance_after,
            charge_id::text AS charge_id, reservation_id::text AS reservation_id
       FROM credit_entries e WHERE e.account_id = ? AND e.sequence > ? ORDER BY e.sequence LIMIT ?`,
    [accountId, after.toString(), pageSize + 1],
  );
  return (rows as EntryRow[]).map(fromEntryRow);
}

/** What charges burned (net of refunds) of each grant, and their net overage. */
export async function burnsOfCharges(tx: Tx, accountId: string, chargeIds: string[]): Promise<Map<string, { byGrant: Map<string, Dec>; overage: Dec }>> {
  const out = new Map<string, { byGrant: Map<string, Dec>; overage: Dec }>();
  if (chargeIds.length === 0) return out;
  const { rows } = await tx.raw(
    `SELECT charge_id::text AS charge_id, coalesce(grant_id::text, '') AS grant_id, kind, sum(amount)::text AS amount
       FROM credit_entries WHERE account_id = ? AND charge_id = ANY(?::uuid[]) AND kind IN ('burn', 'refund', 'overage')
      GROUP BY 1, 2, 3`,
    [accountId, chargeIds],
  );
  for (const r of rows as Array<{ charge_id: string; grant_id: string; kind: string; amount: string }>) {
    const c = out.get(r.charge_id) ?? { byGrant: new Map<string, Dec>(), overage: new Dec(0) };
    out.set(r.charge_id, c);
    if (r.kind === 'overage') c.overage = c.overage.plus(r.amount);
    else c.byGrant.set(r.grant_id, (c.byGrant.get(r.grant_id) ?? new Dec(0)).plus(r.kind === 'burn' ? new Dec(r.amount) : new Dec(r.amount).negated()));
  }
  return out;
}

/**
 * Up to `limit` accounts with a grant whose unheld remainder is past its
 * expiry (the sweeper visits each in a transaction of its own). Spans
 * accounts, like the reservation sweeper's lock: on a cluster distributed by
 * account_id it needs a per-account form.
 */
export async function accountsWithDueGrants(db: Db, now: Date, limit: number): Promise<string[]> {
  const { rows } = await db.raw(
    `SELECT DISTINCT account_id FROM credit_grants
      WHERE expire_time IS NOT NULL AND expire_time <= ? AND amount > spent + held + expired + voided AND void_time IS NULL
      ORDER BY account_id LIMIT ?`,
    [now, limit],
  );
  return (rows as Array<{ account_id: string }>).map((r) => r.account_id);
}
