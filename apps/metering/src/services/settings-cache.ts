import type { AlertRule, Limit, Markup, MarkupKey, OperatorPrice } from '@metering/domain';
import { Db, SettingsChangedError, Tx } from '../store/db';
import { readWriteSettings } from '../store/limits.repo';
import { findMarkups } from '../store/markups.repo';
import { findOperatorPriceVersions } from '../store/prices.repo';
import { readSettingsEpoch } from '../store/settings-epoch.repo';

/** What the pricing of a charge reads: operator price versions and markups (PricingService prices through either source). */
export interface PriceLookups {
  operatorPrices(db: Db | Tx, accountIds: string[], models: Array<[string, string]>): Promise<OperatorPrice[]>;
  markups(db: Db | Tx, keys: MarkupKey[]): Promise<Markup[]>;
}

/** Straight from the database, every time (RPC reads, re-rating). */
export const DIRECT_LOOKUPS: PriceLookups = { operatorPrices: findOperatorPriceVersions, markups: findMarkups };

export interface AccountSettings {
  timeZone?: string;
  softLimits: Limit[];
  /** Whether the account has credits (a credit_accounts row): its charges then burn grants. */
  credits?: boolean;
  /** The account's alert rules, and (when it has any) every limit of it, which LIMIT rules measure. */
  alertRules?: AlertRule[];
  ruleLimits?: Limit[];
  /** The account's declared tag keys (issue 20); undefined when it declared no dimensions (its charges skip dimension_usage). */
  dimensions?: string[];
  /** Distinct values each declared tag key may take per local day (with `dimensions`). */
  maxValuesPerDay?: number;
}

const SEP = '\u0000';

/**
 * The settings as one process read them at one settings epoch (see migration
 * 20261201120000_settings_epoch): operator price versions, markups, and
 * each account's time zone and soft limits, filled on a miss in the caller's
 * transaction (after reading the epoch, when the view has none yet). A
 * caller never trusts a view on its own: it passes `epoch` to its write
 * statement (SETTINGS_ARE), which fails with SettingsChangedError when any
 * replica changed a setting since.
 */
export class SettingsView implements PriceLookups {
  /** The epoch the entries were read at (undefined: nothing read yet). */
  epoch: string | undefined;
  private readonly prices = new Map<string, OperatorPrice[]>();
  private readonly markupRows = new Map<string, Markup[]>();
  private readonly accounts = new Map<string, AccountSettings>();

  get size(): number {
    return this.prices.size + this.markupRows.size + this.accounts.size;
  }

  /** Before a fill: learn the epoch the fill is read at, unless one is known (a later check catches a newer one). */
  private async beforeFill(db: Db | Tx): Promise<void> {
    if (this.epoch === undefined) this.epoch = await readSettingsEpoch(db);
  }

  async operatorPrices(db: Db | Tx, accountIds: string[], models: Array<[string, string]>): Promise<OperatorPrice[]> {
    const accounts = [...new Set(accountIds)];
    const key = (a: string, m: [string, string]) => [a, m[0], m[1]].join(SEP);
    const missing = accounts.flatMap((a) => models.filter((m) => !this.prices.has(key(a, m))).map((m) => ({ a, m })));
    if (missing.length > 0) {
      await this.beforeFill(db);
      const rows = await findOperatorPriceVersions(db, [...new Set(missing.map((x) => x.a))], missing.map((x) => x.m));
      for (const { a, m } of missing) this.prices.set(key(a, m), rows.filter((p) => p.provider === m[0] && p.model === m[1] && (p.accountId === '' || p.accountId === a)));
    }
    const found = new Set<OperatorPrice>();
    for (const a of accounts) for (const m of models) for (const p of this.prices.get(key(a, m)) ?? []) found.add(p);
    return [...found].sort((x, y) => x.effectiveTime.getTime() - y.effectiveTime.getTime());
  }

  async markups(db: Db | Tx, keys: MarkupKey[]): Promise<Markup[]> {
    const key = (k: MarkupKey) => [k.accountId, k.provider, k.model, k.chargeType].join(SEP);
    const missing = keys.filter((k) => !this.markupRows.has(key(k)));
    if (missing.length > 0) {
      await this.beforeFill(db);
      const rows = await findMarkups(db, missing);
      for (const k of missing) {
        this.markupRows.set(key(k), rows.filter((m) => m.provider === k.provider && m.model === k.model && m.chargeType === k.chargeType && (m.accountId === '' || m.accountId === k.accountId)));
      }
    }
    return [...new Set(keys.flatMap((k) => this.markupRows.get(key(k)) ?? []))];
  }

  /** Each account's time zone (absent: none set), soft limits and alert rules. */
  async settings(db: Db | Tx, accountIds: string[]): Promise<Map<string, AccountSettings>> {
    const missing = [...new Set(accountIds)].filter((a) => !this.accounts.has(a));
    if (missing.length > 0) {
      await this.beforeFill(db);
      const { zones, softLimits, credits, alertRules, ruleLimits, dimensions, maxValuesPerDay } = await readWriteSettings(db, missing);
      for (const a of missing) {
        const rules = alertRules.filter((r) => r.accountId === a);
        this.accounts.set(a, {
          timeZone: zones.get(a),
          softLimits: softLimits.filter((l) => l.accountId === a),
          credits: credits.has(a),
          ...(dimensions.has(a) ? { dimensions: dimensions.get(a), maxValuesPerDay: maxValuesPerDay.get(a) } : {}),
          ...(rules.length ? { alertRules: rules, ruleLimits: ruleLimits.filter((l) => l.accountId === a) } : {}),
        });
      }
    }
    return new Map(accountIds.map((a) => [a, this.accounts.get(a) ?? { softLimits: [] }]));
  }
}

/**
 * The hot paths' in-process settings cache: the current view, replaced (not
 * emptied) when settings changed, so a transaction keeps the view and the
 * epoch it priced with even if another one drops the cache meanwhile.
 */
export class SettingsCache {
  private current = new SettingsView();

  constructor(private readonly maxEntries = 100_000) {}

  view(): SettingsView {
    if (this.current.size > this.maxEntries) this.clear();
    return this.current;
  }

  clear(): void {
    this.current = new SettingsView();
  }

  /** Runs fn (a transaction that checks its view's epoch in its writes) again on a fresh view when the settings changed meanwhile. */
  async retrying<T>(fn: (view: SettingsView) => Promise<T>, attempts = 3): Promise<T> {
    for (let n = 1; ; n++) {
      const view = this.view();
      try {
        return await fn(view);
      } catch (err) {
        if (!(err instanceof SettingsChangedError) || n >= attempts) throw err;
        if (this.current === view) this.clear();
      }
    }
  }
}
