import {
  DEFAULT_TIME_ZONE,
  dimensionFieldOf,
  DimensionSettings,
  DimensionsNotDeclaredError,
  encodeUsageQueryPageToken,
  RollupSums,
  UsageGroupKey,
  UsageQueryInput,
  usageRollupOf,
  validateAccountId,
  validateSetDimensions,
  validateUsageQuery,
} from '@metering/domain';
import { readAccount } from '../store/accounts.repo';
import { Db, inTransaction, read } from '../store/db';
import { findDimensions, queryUsageGroups, sumUsageGroups, upsertDimensions } from '../store/dimensions.repo';

/** Whether fn validates without throwing. */
function validates(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch {
    return false;
  }
}

export interface UsageGroupsPage {
  groups: Array<UsageGroupKey & { sums: RollupSums }>;
  totals: RollupSums;
  nextPageToken: string;
  timeZone: string;
}

/** SetDimensions, GetDimensions and QueryUsage (issue 20): declared dimensions, and usage grouped by them from their rollups. */
export class DimensionsService {
  constructor(
    private readonly db: Db,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  /** Declares an account's dimensions. The write moves the settings epoch: every replica's write path sees them at once. */
  async setDimensions(raw: { accountId: string; tagKeys: string[]; maxValuesPerDay?: number }): Promise<DimensionSettings> {
    const d = validateSetDimensions(raw);
    return inTransaction(this.db, (tx) => upsertDimensions(tx, d, this.clock()));
  }

  async getDimensions(raw: { accountId: string }): Promise<{ dimensions: DimensionSettings; declared: boolean }> {
    const accountId = validateAccountId(raw);
    const found = await read(() => findDimensions(this.db, accountId));
    return { dimensions: found ?? { accountId, tagKeys: [] }, declared: found !== undefined };
  }

  /**
   * Groups of a rollup (never raw charges), a page at a time, with totals over every page:
   * daily_usage, or the dimension rollups when the query is by hour, API key or tags (usageRollupOf),
   * which an account without declared dimensions does not have (FAILED_PRECONDITION).
   */
  async queryUsage(raw: UsageQueryInput): Promise<UsageGroupsPage> {
    // A bad account_id reads nothing: the validation below then names it with every other bad field.
    const accountOk = validates(() => validateAccountId({ accountId: raw.accountId }));
    const [declared, account] = accountOk ? await read(() => Promise.all([findDimensions(this.db, raw.accountId), readAccount(this.db, raw.accountId)])) : [undefined, undefined];
    const q = validateUsageQuery(raw, declared?.tagKeys);
    const rollup = usageRollupOf(q);
    if (rollup !== 'daily' && !declared) throw new DimensionsNotDeclaredError(q.accountId, dimensionFieldOf(q));
    const [groups, totals] = await read(() => Promise.all([queryUsageGroups(this.db, q, rollup), sumUsageGroups(this.db, q, rollup)]));
    const more = groups.length > q.pageSize;
    const page = more ? groups.slice(0, q.pageSize) : groups;
    return { groups: page, totals, nextPageToken: more ? encodeUsageQueryPageToken(q, page[page.length - 1]) : '', timeZone: account?.timeZone ?? DEFAULT_TIME_ZONE };
  }
}
