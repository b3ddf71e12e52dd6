import {
  Charge,
  ChargeType,
  MAX_MESSAGE_BYTES,
  PriceOrigin,
  PricingStatus,
  RecordChargeRequest,
  RecordChargeResponse,
  RecordChargeResult,
  RecordChargesRequest,
  RecordChargesResponse,
  RequestType,
  Reservation,
  ReservationStatus,
} from '@metering/contracts';
import { API_KEY_ID_LENGTH, DomainError, MAX_ID_LENGTH, MAX_KEY_LENGTH, MAX_PROVIDER_LENGTH, MAX_TOKENS, ValidationError } from '@metering/domain';
import { CURRENCY_CODE, Dec } from '@metering/pricing';
import { toRpcStatus } from '../grpc/errors';
import { repeatedSizes } from '../grpc/wire';
import { MAX_BATCH } from '../services/charges.service';

/**
 * The answer to RecordCharges must fit MAX_MESSAGE_BYTES (4 MiB, what gRPC
 * clients accept by default): a batch that is committed and then answered
 * with more would fail every retry on the client (RESOURCE_EXHAUSTED), each
 * retry a replay with the same too large answer.
 *
 * So a batch is refused before anything is written when its answer could be
 * larger. The answer to a charge echoes what its request sent (never more:
 * the stored values are the validated request's, tags are no longer) plus the
 * fields only the server fills: SERVER_FIELDS_BYTES at their largest, and
 * RESERVATION_BYTES when the charge settles a reservation. A charge's error
 * is at most ERROR_RESULT_BYTES (the limit over MAX_BATCH, so that a batch
 * of failed charges always fits): longer ones keep their first violations.
 */

/** The largest google.protobuf.Timestamp (9999-12-31T23:59:59.999999999Z). */
const LATEST = { seconds: String(Date.UTC(9999, 11, 31, 23, 59, 59) / 1000), nanos: 999_999_999 };
/** The largest int64. */
const INT64_MAX = '9223372036854775807';
/** A string of `units` UTF-16 code units at 3 bytes each in UTF-8, the most a code unit takes. */
const widest = (units: number) => '\u0800'.repeat(units);
/** The largest value of a generated enum. */
const largest = (e: object) => Math.max(...Object.values(e).filter((v): v is number => typeof v === 'number'));
/**
 * An amount as the service prints it, at its longest: decimal.js keeps
 * `precision` significant digits and prints without an exponent down to
 * 10^toExpNeg, so a sign, "0.", the zeros after the point, and the digits.
 */
const AMOUNT = { amount: '9'.repeat(1 + 2 + (-Dec.toExpNeg - 1) + Dec.precision), currencyCode: CURRENCY_CODE };
const UUID = '00000000-0000-0000-0000-000000000000';
/**
 * The length prefixes of the 3 messages that enclose the echo (the result, `recorded`, the
 * charge) take up to 5 bytes; the encoding below measures at least 1 for each.
 */
const LENGTH_PREFIX_SLACK = 3 * 4;

/** What a recorded charge's answer adds to what its request sent, at most. */
export const SERVER_FIELDS_BYTES =
  RecordChargesResponse.encode({
    results: [
      {
        result: {
          $case: 'recorded',
          value: {
            charge: Charge.fromPartial({
              chargeId: UUID,
              chargeType: largest(ChargeType),
              requestType: largest(RequestType),
              tokens: { totalTokens: String(2 * MAX_TOKENS) },
              metadata: {},
              usageTime: LATEST,
              recordTime: LATEST,
              rateTime: LATEST,
              usageDate: '9999-12-31',
              pricingStatus: largest(PricingStatus),
              // "account:<account>:<provider>/<model>@<ISO time>", the longest price version.
              priceVersion: `account:${'a'.repeat(MAX_ID_LENGTH)}:${'p'.repeat(MAX_PROVIDER_LENGTH)}/${widest(MAX_KEY_LENGTH)}@${new Date(0).toISOString()}`,
              markup: AMOUNT.amount,
              providerCost: AMOUNT,
              promptCost: AMOUNT,
              completionCost: AMOUNT,
              totalCost: AMOUNT,
              callCost: AMOUNT,
              priceOrigin: largest(PriceOrigin),
              // "k_" and 12 hex digits (API_KEY_ID_LENGTH); tags are echoed from the request.
              apiKeyId: 'k'.repeat(API_KEY_ID_LENGTH),
            }),
            replayed: true,
            reservation: undefined,
          },
        },
      },
    ],
  }).finish().length + LENGTH_PREFIX_SLACK;

/** What the reservation a charge settles adds to its answer, at most. */
export const RESERVATION_BYTES = RecordChargeResponse.encode({
  charge: undefined,
  replayed: false,
  reservation: Reservation.fromPartial({
    accountId: 'a'.repeat(MAX_ID_LENGTH),
    reservationId: UUID,
    idempotencyKey: widest(MAX_KEY_LENGTH),
    userId: 'u'.repeat(MAX_ID_LENGTH),
    status: largest(ReservationStatus),
    heldMessages: INT64_MAX,
    heldTokens: INT64_MAX,
    heldCost: AMOUNT,
    periodDay: '9999-12-31',
    createTime: LATEST,
    expireTime: LATEST,
    finishTime: LATEST,
    chargeId: UUID,
    // The API key that made it (issue 20); its tags are not repeated in a charge's answer (handlers/charges.handler.ts).
    apiKeyId: 'k'.repeat(API_KEY_ID_LENGTH),
  }),
}).finish().length;

/** The most one charge's error takes in the answer, its framing included: the limit over the most charges of a batch. */
export const ERROR_RESULT_BYTES = Math.floor(MAX_MESSAGE_BYTES / MAX_BATCH);

/**
 * The most bytes the answer to a batch can take. The request's own bytes
 * come from the wire when the server decoded it, else from encoding it again.
 */
export function answerBound(req: RecordChargesRequest): number {
  const sizes = repeatedSizes(req, 1) ?? req.charges.map((c) => RecordChargeRequest.encode(c).finish().length);
  return req.charges.reduce((sum, c, i) => sum + Math.max(sizes[i] + SERVER_FIELDS_BYTES + (c.reservationId ? RESERVATION_BYTES : 0), ERROR_RESULT_BYTES), 0);
}

/** Refuses (INVALID_ARGUMENT on `charges`, nothing written) a batch whose answer could exceed MAX_MESSAGE_BYTES. */
export function checkAnswerFits(req: RecordChargesRequest): void {
  if (answerBound(req) > MAX_MESSAGE_BYTES) {
    throw new ValidationError([
      {
        field: 'charges',
        description:
          `the answer could exceed the ${MAX_MESSAGE_BYTES}-byte message limit (4 MiB, what gRPC clients accept by default): ` +
          `it echoes every charge, metadata included, and adds up to ${SERVER_FIELDS_BYTES} bytes to each (at least ${ERROR_RESULT_BYTES}); ` +
          `send fewer charges per call`,
      },
    ]);
  }
}

/** A charge's error as its result, at most ERROR_RESULT_BYTES: a ValidationError too long keeps its first violations and says how many are left out. */
export function errorResult(err: DomainError): RecordChargeResult {
  const result = (e: DomainError): RecordChargeResult => ({ result: { $case: 'error', value: toRpcStatus(e) } });
  const fits = (r: RecordChargeResult) => RecordChargesResponse.encode({ results: [r] }).finish().length <= ERROR_RESULT_BYTES;
  const whole = result(err);
  if (fits(whole) || !(err instanceof ValidationError)) return whole;
  for (let keep = err.violations.length - 1; keep > 0; keep--) {
    const cut = result(new ValidationError([...err.violations.slice(0, keep), { field: '', description: `and ${err.violations.length - keep} more violations` }]));
    if (fits(cut)) return cut;
  }
  return result(new ValidationError([{ field: '', description: `${err.violations.length} violations` }]));
}
