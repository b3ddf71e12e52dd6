import type { Metadata } from '@grpc/grpc-js';
import {
  Charge,
  ExportChargesRequest,
  ExportChargesResponse,
  GetChargeRequest,
  GetChargeResponse,
  ListChargesRequest,
  ListChargesResponse,
  protoJson,
} from '@metering/contracts';
import { type ChargeRecord, DomainError } from '@metering/domain';
import { stringify } from 'csv-stringify/sync';
import type { StreamControl } from '../grpc/stream';
import { ChargeQueriesService } from '../services/charge-queries.service';
import { toProtoCharge } from './convert';

/** GetCharge, ListCharges: wire -> service -> wire. ExportCharges: batches of charges -> file chunks, with flow control. */

export const getChargeHandler =
  (service: ChargeQueriesService) =>
  async (req: GetChargeRequest): Promise<GetChargeResponse> => ({ charge: toProtoCharge(await service.getCharge(req)) });

export const listChargesHandler =
  (service: ChargeQueriesService) =>
  async (req: ListChargesRequest): Promise<ListChargesResponse> => {
    const page = await service.listCharges(req);
    return { charges: page.charges.map(toProtoCharge), nextPageToken: page.nextPageToken };
  };

/** The CSV columns of an export, in order, each with its value of a charge. */
const CSV_COLUMNS: Array<[string, (c: ChargeRecord) => string | number | boolean]> = [
  ['charge_id', (c) => c.chargeId],
  ['account_id', (c) => c.accountId],
  ['user_id', (c) => c.userId],
  ['idempotency_key', (c) => c.idempotencyKey],
  ['session_key', (c) => c.sessionKey],
  ['usage_date', (c) => c.usageDate],
  ['usage_time', (c) => c.usageTime.toISOString()],
  ['record_time', (c) => c.recordTime.toISOString()],
  ['provider', (c) => c.provider],
  ['model', (c) => c.model],
  ['charge_type', (c) => c.chargeType],
  ['request_type', (c) => c.requestType],
  ['prompt_tokens', (c) => c.tokens.promptTokens],
  ['completion_tokens', (c) => c.tokens.completionTokens],
  ['reasoning_tokens', (c) => c.tokens.reasoningTokens],
  ['cached_prompt_tokens', (c) => c.tokens.cachedPromptTokens],
  ['cache_write_tokens', (c) => c.tokens.cacheWriteTokens],
  ['cache_write_1h_tokens', (c) => c.tokens.cacheWrite1hTokens],
  ['total_tokens', (c) => c.totalTokens],
  ['call_count', (c) => c.callCount],
  ['pricing_status', (c) => c.pricingStatus],
  ['price_version', (c) => c.priceVersion ?? ''],
  ['price_origin', (c) => c.priceOrigin ?? ''],
  ['markup', (c) => c.markup ?? ''],
  ['currency_code', (c) => c.currencyCode],
  ['provider_cost', (c) => c.costs?.providerCost ?? ''],
  ['prompt_cost', (c) => c.costs?.promptCost ?? ''],
  ['completion_cost', (c) => c.costs?.completionCost ?? ''],
  ['call_cost', (c) => c.costs?.callCost ?? ''],
  ['total_cost', (c) => c.costs?.totalCost ?? ''],
  ['reference', (c) => c.reference],
  ['endpoint', (c) => c.endpoint],
  ['response_time_ms', (c) => c.responseTimeMs ?? ''],
  ['was_cached', (c) => c.wasCached],
  ['had_error', (c) => c.hadError],
  ['error_message', (c) => c.errorMessage],
  ['metadata', (c) => JSON.stringify(c.metadata)],
  ['tags', (c) => JSON.stringify(c.tags)],
  ['api_key_id', (c) => c.apiKeyId],
];
export const EXPORT_CSV_HEADER = CSV_COLUMNS.map(([name]) => name);

const csvRows = (rows: Array<Array<string | number | boolean>>) => stringify(rows, { cast: { boolean: (b) => (b ? 'true' : 'false') } });
const jsonLine = (c: ChargeRecord) => `${JSON.stringify(protoJson('metering.v1.Charge', Charge.encode(toProtoCharge(c)).finish()))}\n`;

/** A reader that stopped reading: the export ends with an error, never as a file that looks complete. */
const readerTooSlow = (slowMs: number) => new DomainError('ABORTED', 'EXPORT_READER_TOO_SLOW', `the client read nothing of the export for ${slowMs} ms; export again`);

export const exportChargesHandler =
  (service: ChargeQueriesService, slowMs: number) =>
  async (req: ExportChargesRequest, _metadata: Metadata, control: StreamControl): Promise<void> => {
    // Validated before the first byte: a bad request is INVALID_ARGUMENT, not a truncated file.
    const { format, batches } = service.exportCharges(req);
    // Waits while the client has not read the previous chunks: memory holds a batch or two.
    const send = async (text: string, count: number) => {
      if (!(await control.write({ data: Buffer.from(text), chargeCount: String(count) } satisfies ExportChargesResponse))) throw readerTooSlow(slowMs);
    };
    if (format === 'csv') await send(csvRows([EXPORT_CSV_HEADER]), 0);
    for await (const batch of batches) {
      if (control.signal.aborted) break;
      await send(format === 'csv' ? csvRows(batch.map((c) => CSV_COLUMNS.map(([, value]) => value(c)))) : batch.map(jsonLine).join(''), batch.length);
    }
    if (control.closing()) throw new DomainError('UNAVAILABLE', 'SERVER_SHUTTING_DOWN', 'the server is shutting down; export again');
  };
