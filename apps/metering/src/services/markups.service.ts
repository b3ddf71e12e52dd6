import { Markup, MarkupKeyInput, validateListMarkups, validateMarkupKey, validateSetMarkup } from '@metering/domain';
import { formatDecimal } from '@metering/pricing';
import { Db, inTransaction, read } from '../store/db';
import { deleteMarkup, listMarkups, lockMarkup, upsertMarkup } from '../store/markups.repo';
import { insertPricingChange } from '../store/pricing-changes.repo';

/**
 * SetMarkup, ListMarkups, DeleteMarkup: the Django models' LLMPrices, managed at run
 * time, as defaults for every account or per-account overrides. Every change
 * is recorded in the audit trail (pricing_changes) in its own transaction.
 */
export class MarkupsService {
  constructor(private readonly db: Db) {}

  async setMarkup(raw: MarkupKeyInput & { factor: string }): Promise<Markup> {
    const markup = validateSetMarkup(raw);
    return inTransaction(this.db, async (tx) => {
      const before = await lockMarkup(tx, markup);
      const stored = await upsertMarkup(tx, markup);
      await insertPricingChange(tx, {
        kind: 'markup_set', accountId: markup.accountId, provider: markup.provider, model: markup.model, chargeType: markup.chargeType,
        before: before ? { factor: formatDecimal(before.factor) } : null, after: { factor: formatDecimal(stored.factor) }, actor: markup.updatedBy,
      });
      return stored;
    });
  }

  async listMarkups(raw: { provider: string; accountId: string }): Promise<Markup[]> {
    const filter = validateListMarkups(raw);
    return read(() => listMarkups(this.db, filter));
  }

  async deleteMarkup(raw: MarkupKeyInput): Promise<boolean> {
    const { key, actor } = validateMarkupKey(raw);
    return inTransaction(this.db, async (tx) => {
      const removed = await deleteMarkup(tx, key);
      if (removed) {
        await insertPricingChange(tx, {
          kind: 'markup_deleted', accountId: key.accountId, provider: key.provider, model: key.model, chargeType: key.chargeType,
          before: { factor: formatDecimal(removed.factor) }, after: null, actor,
        });
      }
      return removed !== undefined;
    });
  }
}
