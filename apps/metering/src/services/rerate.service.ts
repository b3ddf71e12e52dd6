import { ChargeRecord, endedAt, entriesOf, eventsAfterWrite, LedgerChange, RerateQuery, validateRerate } from '@metering/domain';
import { Dec } from '@metering/pricing';
import { lockChargesToRerate, updateChargePricing } from '../store/charges.repo';
import { Db, inTransaction } from '../store/db';
import { burnsOfCharges } from '../store/credits.repo';
import { applyEntries } from '../store/ledger.repo';
import { Books } from './credits.service';
import { readWriteSettings } from '../store/limits.repo';
import { ChargePricing, PricingService } from './pricing.service';

/** What a re-rating run changed. */
export interface RerateReport {
  examined: number;
  changed: number;
  newlyPriced: number;
  stillUnpriced: number;
  totalCostBefore: Dec;
  totalCostAfter: Dec;
  dryRun: boolean;
}

/** Charges re-rated per transaction: each batch commits alone, so a long run holds few locks for long. */
export const RERATE_BATCH = 500;

const samePricing = (a: ChargePricing, b: ChargePricing) =>
  a.pricingStatus === b.pricingStatus &&
  a.priceVersion === b.priceVersion &&
  a.markup === b.markup &&
  a.priceOrigin === b.priceOrigin &&
  JSON.stringify(a.costs) === JSON.stringify(b.costs);

/**
 * RerateCharges: prices the unpriced charges of an account's date range (or,
 * in mode 'all', re-prices every charge after a price correction) with the
 * prices in effect at each charge's usage time and the markups in force now.
 * Each batch locks its charges, rewrites the ones whose pricing changed, and
 * moves their rollups by the difference, and puts the re-rated charges (and
 * any soft limit the new costs took past its amount) on the charge stream, in
 * one transaction. Idempotent: a second run finds nothing more to change.
 */
export class RerateService {
  constructor(
    private readonly db: Db,
    private readonly pricing: PricingService,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  async rerate(raw: Parameters<typeof validateRerate>[0]): Promise<RerateReport> {
    const q: RerateQuery = validateRerate(raw);
    const report: RerateReport = {
      examined: 0, changed: 0, newlyPriced: 0, stillUnpriced: 0, totalCostBefore: new Dec(0), totalCostAfter: new Dec(0), dryRun: q.dryRun,
    };
    let after: { usageDate: string; chargeId: string } | undefined;
    for (;;) {
      const batch = await inTransaction(this.db, async (tx) => {
        const charges = await lockChargesToRerate(tx, q, after, RERATE_BATCH);
        const changes: LedgerChange[] = [];
        const repriced = await this.pricing.priceCharges(tx, charges);
        for (const [n, old] of charges.entries()) {
          report.examined++;
          const pricing = repriced[n];
          if (pricing.pricingStatus === 'unpriced') report.stillUnpriced++;
          if (samePricing(old, pricing)) continue;
          const updated: ChargeRecord = { ...old, ...pricing };
          report.changed++;
          if (old.pricingStatus === 'unpriced') report.newlyPriced++;
          report.totalCostBefore = report.totalCostBefore.plus(old.costs?.totalCost ?? 0);
          report.totalCostAfter = report.totalCostAfter.plus(updated.costs?.totalCost ?? 0);
          if (q.dryRun) continue;
          await updateChargePricing(tx, updated);
          changes.push({ kind: 'charge_rerated', before: old, after: updated });
        }
        // A re-rating that takes a soft cost limit past its amount says so, as a new charge would;
        // one that takes spend across an alert threshold (either way) alerts.
        const written = changes.length ? await readWriteSettings(tx, [q.accountId]) : undefined;
        const settings = written ? [written] : [];
        // Credits: a re-rated charge burns the difference, or is refunded it (what it burned of each
        // grant, read from its balance entries; the grants locked before the counters).
        const now = this.clock();
        const candidates = written?.credits.has(q.accountId) ? changes.flatMap((c) => (c.kind === 'charge_rerated' ? [c] : [])) : [];
        const burned = await burnsOfCharges(tx, q.accountId, candidates.map((c) => c.after.chargeId));
        // A charge that cost something always has burn or overage entries once its account has
        // credits: one with a cost and none was recorded before, and re-rating it moves no credits.
        const rerated = candidates.filter((c) => burned.has(c.after.chargeId) || new Dec(c.before.costs?.totalCost ?? 0).isZero());
        const books = await Books.open(tx, rerated.length ? [q.accountId] : [], now, [...burned.values()].flatMap((b) => [...b.byGrant.keys()]));
        const book = books.get(q.accountId);
        for (const c of rerated) {
          book?.rerate(c.after, new Dec(c.before.costs?.totalCost ?? 0), new Dec(c.after.costs?.totalCost ?? 0), burned.get(c.after.chargeId) ?? { byGrant: new Map(), overage: new Dec(0) }, now);
        }
        const entries = entriesOf([...changes, ...books.changes]);
        await applyEntries(tx, entries, now, eventsAfterWrite(settings, entries, endedAt(now, (a) => written?.zones.get(a))), books.writes(entries, now));
        return charges;
      });
      if (batch.length < RERATE_BATCH) return report;
      const last = batch[batch.length - 1];
      after = { usageDate: last.usageDate, chargeId: last.chargeId };
    }
  }
}
