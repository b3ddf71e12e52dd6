import {
  ChargeFilters,
  ChargeRecord,
  encodeChargePageToken,
  ExportFormat,
  NotFoundError,
  validateExportCharges,
  validateGetCharge,
  validateListCharges,
} from '@metering/domain';
import { Db, read } from '../store/db';
import { findCharge, listCharges } from '../store/charge-queries.repo';

/** Charges read per batch of an export: one indexed range read each, whatever the export's size. */
export const EXPORT_BATCH = 1000;

/** GetCharge, ListCharges and ExportCharges: reading stored charges, for audits, support and exports. */
export class ChargeQueriesService {
  constructor(private readonly db: Db) {}

  async getCharge(raw: Parameters<typeof validateGetCharge>[0]): Promise<ChargeRecord> {
    const lookup = validateGetCharge(raw);
    const charge = await read(() => findCharge(this.db, lookup));
    if (!charge) {
      const by = lookup.chargeId !== undefined ? `charge_id "${lookup.chargeId}"` : `idempotency_key "${lookup.idempotencyKey}"`;
      throw new NotFoundError('CHARGE_NOT_FOUND', `account "${lookup.accountId}" has no charge with ${by}`);
    }
    return charge;
  }

  async listCharges(raw: Parameters<typeof validateListCharges>[0]): Promise<{ charges: ChargeRecord[]; nextPageToken: string }> {
    const q = validateListCharges(raw);
    const rows = await read(() => listCharges(this.db, q, q.after, q.pageSize + 1));
    const more = rows.length > q.pageSize;
    const charges = more ? rows.slice(0, q.pageSize) : rows;
    return { charges, nextPageToken: more ? encodeChargePageToken(q, charges[charges.length - 1]) : '' };
  }

  /**
   * The export's filters and format (validated before anything is sent), and its charges as
   * batches: each read only when the previous one was consumed, so memory holds one batch.
   */
  exportCharges(raw: Parameters<typeof validateExportCharges>[0]): { format: ExportFormat; batches: AsyncGenerator<ChargeRecord[]> } {
    const q = validateExportCharges(raw);
    return { format: q.format, batches: this.batches(q) };
  }

  private async *batches(f: ChargeFilters): AsyncGenerator<ChargeRecord[]> {
    let after: { usageDate: string; chargeId: string } | undefined;
    for (;;) {
      const batch = await read(() => listCharges(this.db, f, after, EXPORT_BATCH));
      if (batch.length > 0) yield batch;
      if (batch.length < EXPORT_BATCH) return;
      const last = batch[batch.length - 1];
      after = { usageDate: last.usageDate, chargeId: last.chargeId };
    }
  }
}
