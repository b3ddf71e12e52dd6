/**
 * The gRPC ceiling: a grpc-js server with the same MeteringService contract
 * whose handlers do nothing but answer a fixed, realistic response. Driven by
 * the same load generator, it measures what the RPC layer alone costs on this
 * machine. Prints {"port": N} when listening.
 */
import { type handleUnaryCall, Server, ServerCredentials, status } from '@grpc/grpc-js';
import { Charge, CheckLimitsReason, CheckLimitsResponse, LimitStatus, MeteringServiceService, PricingStatus } from '@metering/contracts';
import { chargeRequest } from './workload';

const money = (amount: string) => ({ amount, currencyCode: 'USD' });
const now = { seconds: String(Math.floor(Date.now() / 1000)), nanos: 0 };
const req = chargeRequest('bench', 'u1', 'k');
// fromPartial fills every field the contract has, so the answer encodes as the service's does.
const charge = Charge.fromPartial({
  ...req, chargeId: '00000000-0000-4000-8000-000000000000', tokens: { promptTokens: '1200', completionTokens: '350', reasoningTokens: '0', cachedPromptTokens: '400', cacheWriteTokens: '0', totalTokens: '1550', cacheWrite1hTokens: '0' },
  usageTime: now, recordTime: now, rateTime: now, usageDate: '2026-11-24', pricingStatus: PricingStatus.PRICING_STATUS_PRICED, priceVersion: 'openai/gpt-4o-mini@2024-07-18',
  markup: '1', providerCost: money('0.00035'), promptCost: money('0.00014'), completionCost: money('0.00021'), callCost: money('0'), totalCost: money('0.00035'), priceOrigin: 1,
});
const usage = { messageCount: '12', totalTokens: '18600', totalCost: money('0.0042') };
const limit = LimitStatus.fromPartial({ scope: 1, measure: 1, limit: '100', used: '12', remaining: '88', exceeded: false, period: 1, enforcement: 1, reserved: '0', periodStart: '2026-11-24' });

type Unary = handleUnaryCall<unknown, unknown>;
const reply =
  <Req>(make: (req: Req) => unknown): Unary =>
  (call, cb) =>
    cb(null, make(call.request as Req));
const handlers: Record<string, Unary> = {};
for (const name of Object.keys(MeteringServiceService)) handlers[name] = (_call, cb) => cb({ code: status.UNIMPLEMENTED, details: 'not in the no-op server' });
handlers.recordCharge = reply(() => ({ charge, replayed: false }));
handlers.recordCharges = reply((r: { charges: unknown[] }) => ({ results: r.charges.map(() => ({ result: { $case: 'recorded', value: { charge, replayed: false } } })) }));
handlers.checkLimits = reply(() => CheckLimitsResponse.fromPartial({
  allowed: true, reason: CheckLimitsReason.CHECK_LIMITS_REASON_WITHIN_LIMITS, message: 'Within limits', date: '2026-11-24', timeZone: 'UTC', userUsage: usage, accountUsage: usage, limits: [limit, limit], replayed: false,
}));

const server = new Server();
server.addService(MeteringServiceService, handlers);
server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  console.log(JSON.stringify({ port }));
});
process.on('SIGTERM', () => server.forceShutdown());
