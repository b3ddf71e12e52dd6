import { CHARGE_TYPE_BY_NUMBER, ChargeType, PricingStatus } from './charge';
import { checkDateRange, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, parseDay } from './usage';
import { decodePageToken, encodePageToken, stringTuple } from './page-token';
import { checkEnum, checkId, checkInt, checkModel, checkProvider, checkText, Violations } from './validation';

/** GetCharge, ListCharges and ExportCharges: reading stored charges, for audits, support and exports. */

export const PRICING_STATUS_BY_NUMBER: Record<number, PricingStatus> = { 1: 'priced', 2: 'unpriced' };
export type ExportFormat = 'csv' | 'json_lines';
export const EXPORT_FORMAT_BY_NUMBER: Record<number, ExportFormat> = { 1: 'csv', 2: 'json_lines' };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** One charge, by its id or by its idempotency key. */
export type ChargeLookup = { accountId: string } & ({ chargeId: string; idempotencyKey?: undefined } | { idempotencyKey: string; chargeId?: undefined });

export function validateGetCharge(raw: { accountId: string; chargeId: string; idempotencyKey: string }): ChargeLookup {
  const v = new Violations();
  const accountId = checkId(v, 'account_id', raw.accountId);
  if ((raw.chargeId === '') === (raw.idempotencyKey === '')) {
    v.add(raw.chargeId === '' ? 'charge_id' : 'idempotency_key', 'exactly one of charge_id and idempotency_key must be set');
    v.done();
  }
  if (raw.chargeId !== '' && !UUID.test(raw.chargeId)) v.add('charge_id', 'must be a charge id as RecordCharge answered it (a lower-case UUID)');
  const key = raw.idempotencyKey === '' ? '' : checkText(v, 'idempotency_key', raw.idempotencyKey, 255);
  v.done();
  return raw.chargeId !== '' ? { accountId, chargeId: raw.chargeId } : { accountId, idempotencyKey: key };
}

export interface ChargeFiltersInput {
  accountId: string;
  startDate: string;
  endDate: string;
  userId: string;
  provider: string;
  model: string;
  chargeType: number;
  pricingStatus: number;
}

export interface ChargeFilters {
  accountId: string;
  startDate: string;
  endDate: string;
  userId?: string;
  provider?: string;
  model?: string;
  chargeType?: ChargeType;
  pricingStatus?: PricingStatus;
}

/** The position of a charge in (usage_date, charge_id) order, where a page or a batch resumes. */
export interface ChargeCursor {
  usageDate: string;
  chargeId: string;
}

export interface ChargeListQuery extends ChargeFilters {
  pageSize: number;
  after?: ChargeCursor;
}

function checkFilters(v: Violations, raw: ChargeFiltersInput): ChargeFilters {
  checkDateRange(v, raw.startDate, raw.endDate);
  return {
    accountId: checkId(v, 'account_id', raw.accountId),
    startDate: raw.startDate,
    endDate: raw.endDate,
    userId: checkId(v, 'user_id', raw.userId, false) || undefined,
    provider: checkProvider(v, 'provider', raw.provider, false) || undefined,
    model: checkModel(v, 'model', raw.model, false) || undefined,
    chargeType: checkEnum(v, 'charge_type', raw.chargeType, CHARGE_TYPE_BY_NUMBER),
    pricingStatus: checkEnum(v, 'pricing_status', raw.pricingStatus, PRICING_STATUS_BY_NUMBER),
  };
}

/** The filters a page token is bound to: a token is only valid for the same query. */
const fingerprint = (f: ChargeFilters) => [f.accountId, f.startDate, f.endDate, f.userId ?? '', f.provider ?? '', f.model ?? '', f.chargeType ?? '', f.pricingStatus ?? ''].join('\u0001');

export function encodeChargePageToken(f: ChargeFilters, last: ChargeCursor): string {
  return encodePageToken(fingerprint(f), [last.usageDate, last.chargeId]);
}

function chargeCursor(key: unknown): ChargeCursor | undefined {
  const k = stringTuple(key, 2);
  return k && parseDay(k[0]) && UUID.test(k[1]) ? { usageDate: k[0], chargeId: k[1] } : undefined;
}

/** Validates a ListCharges request; throws ValidationError naming every bad field. */
export function validateListCharges(raw: ChargeFiltersInput & { pageSize: number; pageToken: string }): ChargeListQuery {
  const v = new Violations();
  const filters = checkFilters(v, raw);
  const pageSize = raw.pageSize === 0 ? DEFAULT_PAGE_SIZE : checkInt(v, 'page_size', raw.pageSize, 1, MAX_PAGE_SIZE);
  const after = decodePageToken(v, raw.pageToken, fingerprint(filters), chargeCursor);
  v.done();
  return { ...filters, pageSize, after };
}

/** Validates an ExportCharges request: the filters of ListCharges and a required format. */
export function validateExportCharges(raw: ChargeFiltersInput & { format: number }): ChargeFilters & { format: ExportFormat } {
  const v = new Violations();
  const filters = checkFilters(v, raw);
  const format = checkEnum(v, 'format', raw.format, EXPORT_FORMAT_BY_NUMBER);
  if (raw.format === 0) v.add('format', 'is required (CSV or JSON_LINES)');
  v.done();
  return { ...filters, format: format as ExportFormat };
}
