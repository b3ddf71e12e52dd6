import { DailyUsageRequestInput, encodeUsagePageToken, validateDailyUsageQuery } from '@metering/domain';
import { Db, read } from '../store/db';
import type { RollupSums } from '@metering/domain';
import { DailyUsageRow, listDailyUsage, sumDailyUsage } from '../store/usage.repo';

export interface DailyUsagePage {
  rows: DailyUsageRow[];
  totals: RollupSums;
  nextPageToken: string;
}

/** GetDailyUsage: reads the daily rollups (never raw charges), a page at a time, with totals over all pages. */
export class UsageService {
  constructor(private readonly db: Db) {}

  async getDailyUsage(raw: DailyUsageRequestInput): Promise<DailyUsagePage> {
    const q = validateDailyUsageQuery(raw);
    const [rows, totals] = await read(() => Promise.all([listDailyUsage(this.db, q), sumDailyUsage(this.db, q)]));
    const more = rows.length > q.pageSize;
    const page = more ? rows.slice(0, q.pageSize) : rows;
    return { rows: page, totals, nextPageToken: more ? encodeUsagePageToken(q, page[page.length - 1]) : '' };
  }
}
