import type { ChargePriceOrigin, ChargeRecord, ChargeType, DimensionValueRefusal, DimensionValuesWanted, JsonObject, PricingStatus, RequestType, RerateQuery, ServiceTierName } from '@metering/domain';
import { TOKEN_CLASSES, type TokenCounts, tokenField } from '@metering/pricing';
import { Db, onCitus, perCallStatement, statement, Tx } from './db';
import { SETTINGS_ARE } from './settings-epoch.repo';

/** SQL of the charges table. Runs in the caller's transaction (or alone, where the caller passes the Db); no business rules. */

export interface ChargeRow {
  account_id: string;
  charge_id: string;
  idempotency_key: string;
  user_id: string;
  session_key: string;
  provider: string;
  model: string;
  charge_type: ChargeType;
  request_type: RequestType;
  prompt_tokens: string;
  completion_tokens: string;
  reasoning_tokens: string;
  cached_prompt_tokens: string;
  cache_write_tokens: string;
  cache_write_1h_tokens: string;
  audio_prompt_tokens: string;
  cached_audio_prompt_tokens: string;
  image_prompt_tokens: string;
  cached_image_prompt_tokens: string;
  audio_completion_tokens: string;
  image_completion_tokens: string;
  service_tier: ServiceTierName;
  tool_calls: Record<string, number>;
  total_tokens: string;
  call_count: string;
  reference: string;
  endpoint: string;
  response_time_ms: string | null;
  was_cached: boolean;
  had_error: boolean;
  error_message: string;
  metadata: JsonObject;
  usage_time: Date;
  usage_time_supplied: boolean;
  usage_date: string;
  reservation_id: string | null;
  record_time: Date;
  pricing_status: PricingStatus;
  price_version: string | null;
  markup: string | null;
  price_origin: ChargePriceOrigin | null;
  rate_time: Date;
  currency_code: string;
  provider_cost: string | null;
  prompt_cost: string | null;
  completion_cost: string | null;
  call_cost: string | null;
  total_cost: string | null;
  /** Migration 20261206214500_tags; events written before it lack them. */
  tags: Record<string, string>;
  api_key_id: string;
  /** Migration 20261206220000_dimensions. */
  dimensions: Record<string, string> | null;
  rollup_hour: number | null;
}

type TokenColumn = 'prompt_tokens' | 'completion_tokens' | 'reasoning_tokens' | 'cached_prompt_tokens' | 'cache_write_tokens' | 'cache_write_1h_tokens'
  | 'audio_prompt_tokens' | 'cached_audio_prompt_tokens' | 'image_prompt_tokens' | 'cached_image_prompt_tokens' | 'audio_completion_tokens' | 'image_completion_tokens';

export function toChargeRow(c: ChargeRecord): ChargeRow {
  return {
    account_id: c.accountId,
    charge_id: c.chargeId,
    idempotency_key: c.idempotencyKey,
    user_id: c.userId,
    session_key: c.sessionKey,
    provider: c.provider,
    model: c.model,
    charge_type: c.chargeType,
    request_type: c.requestType,
    ...(Object.fromEntries(TOKEN_CLASSES.map((k) => [tokenField(k), String(c.tokens[k])])) as Pick<ChargeRow, TokenColumn>),
    service_tier: c.serviceTier,
    tool_calls: c.toolCalls,
    total_tokens: String(c.totalTokens),
    call_count: String(c.callCount),
    reference: c.reference,
    endpoint: c.endpoint,
    response_time_ms: c.responseTimeMs === null ? null : String(c.responseTimeMs),
    was_cached: c.wasCached,
    had_error: c.hadError,
    error_message: c.errorMessage,
    metadata: c.metadata,
    usage_time: c.usageTime,
    usage_time_supplied: c.usageTimeSupplied,
    usage_date: c.usageDate,
    // The service's clock at the write, as every timestamp of the write path (not the database's now()).
    record_time: c.recordTime,
    reservation_id: c.reservationId,
    pricing_status: c.pricingStatus,
    price_version: c.priceVersion,
    markup: c.markup,
    price_origin: c.priceOrigin,
    rate_time: c.rateTime,
    currency_code: c.currencyCode,
    provider_cost: c.costs?.providerCost ?? null,
    prompt_cost: c.costs?.promptCost ?? null,
    completion_cost: c.costs?.completionCost ?? null,
    call_cost: c.costs?.callCost ?? null,
    total_cost: c.costs?.totalCost ?? null,
    tags: c.tags,
    api_key_id: c.apiKeyId,
    dimensions: c.dimensions ?? null,
    rollup_hour: c.rollupHour ?? null,
  };
}

/** The column list of inserted charge rows (the same for every row toChargeRow makes: the statements' texts stay constant). */
export const chargeColumns = (row: ChargeRow): string => Object.keys(row).map((c) => `"${c}"`).join(', ');

export function fromChargeRow(r: ChargeRow): ChargeRecord {
  return {
    chargeId: r.charge_id,
    accountId: r.account_id,
    userId: r.user_id,
    idempotencyKey: r.idempotency_key,
    sessionKey: r.session_key,
    provider: r.provider,
    model: r.model,
    chargeType: r.charge_type,
    requestType: r.request_type,
    // Events written before a class existed lack its column: 0.
    tokens: Object.fromEntries(TOKEN_CLASSES.map((k) => [k, Number(r[tokenField(k) as TokenColumn] ?? 0)])) as unknown as TokenCounts,
    serviceTier: r.service_tier ?? 'standard',
    toolCalls: r.tool_calls ?? {},
    totalTokens: Number(r.total_tokens),
    callCount: Number(r.call_count),
    reference: r.reference,
    endpoint: r.endpoint,
    responseTimeMs: r.response_time_ms === null ? null : Number(r.response_time_ms),
    wasCached: r.was_cached,
    hadError: r.had_error,
    errorMessage: r.error_message,
    metadata: r.metadata,
    usageTime: r.usage_time,
    usageTimeSupplied: r.usage_time_supplied,
    usageDate: r.usage_date,
    reservationId: r.reservation_id,
    recordTime: r.record_time,
    pricingStatus: r.pricing_status,
    priceVersion: r.price_version,
    markup: r.markup,
    priceOrigin: r.price_origin,
    rateTime: r.rate_time,
    currencyCode: r.currency_code,
    tags: r.tags ?? {},
    apiKeyId: r.api_key_id ?? '',
    dimensions: r.dimensions ?? null,
    rollupHour: r.rollup_hour ?? null,
    costs:
      r.total_cost === null
        ? null
        : {
            providerCost: r.provider_cost as string,
            promptCost: r.prompt_cost as string,
            completionCost: r.completion_cost as string,
            callCost: r.call_cost as string,
            totalCost: r.total_cost,
          },
  };
}

/**
 * Inserts the charges whose idempotency keys are free, in the given order (a
 * caller that sorts by key makes concurrent batches lock keys in one order).
 * Returns the stored charges; a taken key is skipped (a concurrent insert of
 * the same key waits for the other transaction and then skips). Fails with
 * SettingsChangedError unless the settings epoch is still `settingsEpoch` (the
 * one the charges were priced at).
 *
 * `wanted` (declared dimensions' values the caller does not know to be
 * admitted on their day, in key order): the same statement first admits them
 * into dimension_values (see ADMIT_CTES), and a charge carrying a value that
 * was not admitted is not inserted; those values come back as `refusals`.
 * Without values wanted the statement is the plain insert.
 */
export async function insertChargesIfAbsent(
  tx: Tx,
  charges: ChargeRecord[],
  settingsEpoch: string | undefined,
  wanted: DimensionValuesWanted[] = [],
  now: Date = new Date(0),
): Promise<{ inserted: ChargeRecord[]; refusals: DimensionValueRefusal[] }> {
  if (charges.length === 0) return { inserted: [], refusals: [] };
  // The rows as one JSON parameter rather than a VALUES list of ~40 parameters per charge: a
  // batch of 1000 charges would be a statement of 40,000 parameters, slow to build and to parse.
  const rows = charges.map(toChargeRow);
  const columns = chargeColumns(rows[0]);
  if (wanted.length === 0) {
    const { rows: inserted } = await statement(
      tx,
      'insert_charges',
      `INSERT INTO charges (${columns})
         SELECT ${columns} FROM json_populate_recordset(NULL::charges, ?::json) WHERE ${SETTINGS_ARE}
       ON CONFLICT (account_id, idempotency_key) DO NOTHING
       RETURNING *`,
      [JSON.stringify(rows), settingsEpoch ?? null],
    );
    return { inserted: (inserted as ChargeRow[]).map(fromChargeRow), refusals: [] };
  }
  const admit = wanted.map((w) => ({ account_id: w.accountId, usage_date: w.usageDate, tag_key: w.tagKey, value_limit: w.limit, vals: w.values, updated_at: now }));
  const { rows: out } = await statement(
    tx,
    'insert_charges_admitting',
    `WITH ${ADMIT_CTES}, given AS (
       SELECT * FROM json_populate_recordset(NULL::charges, ?::json)
     ), refused AS (
       SELECT DISTINCT g.account_id, g.usage_date, t.tag_key, a.value_limit, t.value
         FROM given g CROSS JOIN LATERAL jsonb_each_text(g.dimensions) AS t(tag_key, value)
         JOIN admitted a ON a.account_id = g.account_id AND a.usage_date = g.usage_date AND a.tag_key = t.tag_key
        WHERE NOT t.value = ANY(a.vals)
     ), inserted AS (
       INSERT INTO charges (${columns})
         SELECT ${columns} FROM given r
          WHERE ${SETTINGS_ARE}
            AND NOT EXISTS (SELECT 1 FROM refused f WHERE f.account_id = r.account_id AND f.usage_date = r.usage_date AND r.dimensions ->> f.tag_key = f.value)
       ON CONFLICT (account_id, idempotency_key) DO NOTHING
       RETURNING *
     )
     SELECT i.*, x.refusals FROM (SELECT (SELECT json_agg(f) FROM refused f) AS refusals) x LEFT JOIN inserted i ON true`,
    [JSON.stringify(admit), settingsEpoch ?? null, JSON.stringify(rows), settingsEpoch ?? null],
  );
  const all = out as Array<ChargeRow & { refusals: unknown }>;
  const raw = all[0]?.refusals;
  const refused = (typeof raw === 'string' ? JSON.parse(raw) : raw ?? []) as Array<{ account_id: string; usage_date: string; tag_key: string; value_limit: number; value: string }>;
  return {
    inserted: all.filter((r) => r.charge_id !== null).map(fromChargeRow),
    refusals: refused.map((f) => ({ accountId: f.account_id, usageDate: String(f.usage_date).slice(0, 10), tagKey: f.tag_key, limit: Number(f.value_limit), value: f.value })),
  };
}

/**
 * Admits declared dimensions' values (one JSON parameter: per account, local
 * day and tag key, the values wanted, cut at the limit), then the settings
 * epoch's check. Each (account, day, key) row is upserted in key order; ON
 * CONFLICT DO UPDATE locks it and reads its newest version (after waiting for
 * a concurrent writer, whatever the statement's snapshot), so the new values
 * appended are exactly those that fit: the array never grows past the
 * limit, however many charges race. The values not in the array afterwards
 * are refused: a charge carrying one (wanted or not: a group's values past its
 * limit are cut before they are sent) is not inserted. A value already
 * admitted costs a row lock until commit; the caller skips values it knows
 * are admitted (they never leave the set). Only immutable functions in DO
 * UPDATE SET (Citus refuses others there): a text array, not JSON.
 */
const ADMIT_CTES = `wanted AS (
       SELECT account_id, usage_date, tag_key, value_limit, vals, updated_at FROM json_populate_recordset(NULL::dimension_values, ?::json)
     ), admitted AS (
       INSERT INTO dimension_values AS d (account_id, usage_date, tag_key, value_limit, vals, updated_at)
         SELECT account_id, usage_date, tag_key, value_limit, vals, updated_at FROM wanted WHERE ${SETTINGS_ARE}
       ON CONFLICT (account_id, usage_date, tag_key) DO UPDATE SET
         value_limit = excluded.value_limit,
         vals = d.vals || ARRAY(
           SELECT c.v FROM unnest(excluded.vals) WITH ORDINALITY AS c(v, i)
            WHERE NOT c.v = ANY(d.vals) ORDER BY c.i LIMIT greatest(excluded.value_limit - cardinality(d.vals), 0)),
         updated_at = excluded.updated_at
       RETURNING account_id, usage_date, tag_key, value_limit, vals
     )`;

/**
 * The stored charges with these (account, idempotency key) pairs (replays, conflicts), each key
 * one probe of the unique index: a lateral subquery of equalities on the whole key (its LIMIT
 * keeps the planner from flattening it into a join), sent unnamed (perCallStatement: planned
 * with its values). The join it replaces was planned from the statistics of when an account was
 * small (a new, fast-growing account before the next ANALYZE, or a database without
 * autovacuum): it read all of the account's charges by account_id, 4.5-8 ms per look-up at 20k
 * charges (auto_explain, `METERING_PROFILE_REPLAYS=0.05 node tools/bench/service-cpu.mjs charge
 * 64`). So did the lateral form with the account as a value (account_id = $1, or = ANY($1)):
 * with such statistics the account's rows look few, and charges_by_day_id (account first) ties
 * with the unique index (test/integration/hot-read-plans.spec.ts). On Citus, where a statement
 * routes to a shard only by an account_id value, the join as before (account_id = ANY($accounts)).
 * Not a PlannedOnceRead (db.ts): a generic plan cannot tell the unique index from charges_by_day_id
 * on a table never analyzed, and probed the latter by account_id alone (docs/architecture.md).
 */
export async function findChargesByIdempotencyKeys(tx: Db | Tx, keys: Array<{ accountId: string; idempotencyKey: string }>): Promise<ChargeRecord[]> {
  if (keys.length === 0) return [];
  const accounts = keys.map((k) => k.accountId);
  const idempotencyKeys = keys.map((k) => k.idempotencyKey);
  // Two arrays rather than a row-value IN list, which the embedded database plans poorly for long lists.
  const { rows } = onCitus(tx)
    ? await statement(
        tx,
        'find_charges_citus',
        `SELECT c.* FROM charges c
           JOIN unnest(?::text[], ?::text[]) AS k(account_id, idempotency_key) USING (account_id, idempotency_key)
          WHERE c.account_id = ANY(?::text[])`,
        [accounts, idempotencyKeys, [...new Set(accounts)]],
      )
    : await perCallStatement(
        tx,
        `${FIND_CHARGES_BY_KEY}?::text[], ?::text[]) AS k(account_id, idempotency_key)
           CROSS JOIN LATERAL (SELECT * FROM charges WHERE account_id = k.account_id AND idempotency_key = k.idempotency_key LIMIT 1) c`,
        [accounts, idempotencyKeys],
      );
  return (rows as ChargeRow[]).map(fromChargeRow);
}

/** The first words of findChargesByIdempotencyKeys' form for plain Postgres (the Citus guard knows it by them). */
export const FIND_CHARGES_BY_KEY = 'SELECT c.* FROM unnest(';

/**
 * One batch of charges to re-rate, locked for update, in (usage_date,
 * charge_id) order after `after`: the unpriced ones (the partial index
 * charges_unpriced) or, in mode 'all', every one of the range.
 */
export async function lockChargesToRerate(
  tx: Tx,
  q: RerateQuery,
  after: { usageDate: string; chargeId: string } | undefined,
  limit: number,
): Promise<ChargeRecord[]> {
  const query = tx('charges').where('account_id', q.accountId).whereBetween('usage_date', [q.startDate, q.endDate]);
  if (q.mode === 'unpriced_only') query.where('pricing_status', 'unpriced');
  // A cost kept by ImportCharges is what the source system billed: re-rating never changes it.
  else query.whereRaw(`price_origin IS DISTINCT FROM 'imported'`);
  if (q.provider) query.where('provider', q.provider);
  if (q.model) query.where('model', q.model);
  if (after) query.whereRaw('(usage_date, charge_id) > (?, ?)', [after.usageDate, after.chargeId]);
  const rows: ChargeRow[] = await query.orderBy(['usage_date', 'charge_id']).limit(limit).forUpdate();
  return rows.map(fromChargeRow);
}

/** Writes a charge's new pricing (status, version, markup, origin, costs, rate time). */
export async function updateChargePricing(tx: Tx, c: ChargeRecord): Promise<void> {
  const row = toChargeRow(c);
  await tx('charges')
    .where({ account_id: c.accountId, charge_id: c.chargeId })
    .update({
      pricing_status: row.pricing_status,
      price_version: row.price_version,
      markup: row.markup,
      price_origin: row.price_origin,
      rate_time: row.rate_time,
      provider_cost: row.provider_cost,
      prompt_cost: row.prompt_cost,
      completion_cost: row.completion_cost,
      call_cost: row.call_cost,
      total_cost: row.total_cost,
    });
}
