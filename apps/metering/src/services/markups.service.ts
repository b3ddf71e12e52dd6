import { Markup, MarkupKeyInput, validateMarkupKey, validateProviderFilter, validateSetMarkup } from '@metering/domain';
import { Db, inTransaction, read } from '../store/db';
import { deleteMarkup, listMarkups, upsertMarkup } from '../store/markups.repo';

/** SetMarkup, ListMarkups, DeleteMarkup: the seeds' LLMPrices, managed at run time. */
export class MarkupsService {
  constructor(private readonly db: Db) {}

  async setMarkup(raw: MarkupKeyInput & { factor: string }): Promise<Markup> {
    const markup = validateSetMarkup(raw);
    return inTransaction(this.db, (tx) => upsertMarkup(tx, markup));
  }

  async listMarkups(provider: string): Promise<Markup[]> {
    const filter = validateProviderFilter(provider);
    return read(() => listMarkups(this.db, filter));
  }

  async deleteMarkup(raw: MarkupKeyInput): Promise<boolean> {
    const key = validateMarkupKey(raw);
    return inTransaction(this.db, (tx) => deleteMarkup(tx, key));
  }
}
