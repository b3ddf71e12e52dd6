import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Anthropic from '@anthropic-ai/sdk';
import {
  BudgetExceededError,
  meterAnthropic,
  MeteringClient,
  MeteringUnavailableError,
  meterOpenAI,
  RecordQueue,
  type RecordChargeResponse,
  type Reservation,
} from '@metering/client';
import { LimitMeasure, LimitPeriod, PricingStatus, ReservationStatus, UsageFormat } from '@metering/contracts';
import Decimal from 'decimal.js';
import { buildSync } from 'esbuild';
import OpenAI from 'openai';
import { databaseTargets, describeEachOf, requirePostgresInCi, TestDatabase } from '../support/databases';
import { startStandIn, StandIn } from '../support/llm-stand-in';
import { freePort } from '../support/pg-cluster';
import { readmeBlock } from '../support/readme';
import { buildServer, ROOT, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 18, capture without code: the official `openai` and `@anthropic-ai/sdk` clients wrapped by
 * libs/client (meterOpenAI, meterAnthropic), pointed with baseURL at a stand-in HTTP server that
 * speaks the providers' wire formats (test/support/llm-stand-in.ts), against the real metering
 * server. Each call reserves before the provider request, records the provider's usage object as
 * it came with the response id as the idempotency key, and settles its reservation; the charge's
 * cost is what RecordCharge gives for the same usage object (another account, another key) and
 * GetDailyUsage moves by exactly that. A failed provider call and an abandoned stream release
 * their hold; a denied budget throws BudgetExceededError before the stand-in sees a request; the
 * outage policy is tested by stopping the real metering server mid-call and starting it again.
 */
beforeAll(() => buildServer());
requirePostgresInCi();

const today = () => new Date().toISOString().slice(0, 10);

describeEachOf(databaseTargets(), 'pglite')('the OpenAI and Anthropic SDK wrappers on $name', (target) => {
  let tdb: TestDatabase;
  let port: number;
  let server: ServerProcess;
  let metering: MeteringClient;
  let standIn: StandIn;
  let openai: OpenAI;
  let anthropic: Anthropic;

  beforeAll(async () => {
    tdb = await target.create();
    port = await freePort();
    server = await startServer(tdb.config, { PORT: String(port) });
    metering = new MeteringClient({ address: `127.0.0.1:${port}`, deadlineMs: 20_000 });
    standIn = await startStandIn();
    // The real SDKs, pointed at the stand-in; no retries of their own, so a request count is exact.
    openai = new OpenAI({ apiKey: 'sk-stand-in', baseURL: `${standIn.url}/v1`, maxRetries: 0 });
    anthropic = new Anthropic({ apiKey: 'sk-ant-stand-in', baseURL: standIn.url, maxRetries: 0 });
  });

  afterAll(async () => {
    metering?.close();
    await standIn?.close();
    await server?.stop();
    await tdb?.drop();
  });

  const dailyCost = async (accountId: string) => (await metering.call('getDailyUsage', { accountId, startDate: today(), endDate: today() })).totals?.totalCost?.amount || '0';

  /** A wrapper's options that keep what it reserved and recorded. */
  const watched = (accountId: string, userId = 'u1') => {
    const reserved: Reservation[] = [];
    const recorded: RecordChargeResponse[] = [];
    return { reserved, recorded, options: { metering, accountId, userId, onReserved: (r: Reservation) => reserved.push(r), onRecorded: (r: RecordChargeResponse) => recorded.push(r) } };
  };

  /**
   * The charge the wrapper recorded is the provider's usage object priced by the server: the same
   * object sent to RecordCharge by hand (another account, another key) costs the same, the daily
   * usage moved by exactly that, and the reservation it held is the one the charge settled.
   */
  async function expectCharged(accountId: string, before: string, recorded: RecordChargeResponse, reserved: Reservation, expected: { id: string; provider: string; model: string; usage: Record<string, unknown>; format: UsageFormat }) {
    const charge = recorded.charge!;
    expect(charge.idempotencyKey).toBe(expected.id);
    expect([charge.provider, charge.model]).toEqual([expected.provider, expected.model]);
    const byHand = await metering.recordCharge({ accountId: 'by-hand', userId: 'u1', provider: expected.provider, model: expected.model, idempotencyKey: randomUUID(), usage: expected.usage, usageFormat: expected.format });
    expect(charge.totalCost?.amount).toBe(byHand.charge?.totalCost?.amount);
    expect(charge.pricingStatus).toBe(PricingStatus.PRICING_STATUS_PRICED);
    expect(new Decimal(charge.totalCost!.amount).gt(0)).toBe(true);
    expect(new Decimal(await dailyCost(accountId)).minus(before).toString()).toBe(new Decimal(charge.totalCost!.amount).toString());
    expect(recorded.reservation?.reservationId).toBe(reserved.reservationId);
    expect(recorded.reservation?.status).toBe(ReservationStatus.RESERVATION_STATUS_SETTLED);
    expect(recorded.reservation?.chargeId).toBe(charge.chargeId);
  }

  const messages = [
    { role: 'system' as const, content: 'You summarise contracts for a legal team. Answer in one sentence, plainly, without legal advice.' },
    { role: 'user' as const, content: 'Summarise: the agreement renews each year on its anniversary unless either party cancels in writing 30 days before.' },
  ];

  it('OpenAI chat.completions.create: the completion as the provider sent it, its usage recorded under its id', async () => {
    const w = watched('chat');
    const before = await dailyCost('chat');
    const completion = await meterOpenAI(openai, w.options).chat.completions.create({ model: 'gpt-4o', max_tokens: 300, messages });
    expect(standIn.answers.at(-1)).toEqual([completion]);
    expect(completion.id).toMatch(/^chatcmpl-/);
    expect(w.reserved).toHaveLength(1);
    await expectCharged('chat', before, w.recorded[0], w.reserved[0], { id: completion.id, provider: 'openai', model: completion.model, usage: completion.usage as unknown as Record<string, unknown>, format: UsageFormat.USAGE_FORMAT_OPENAI_CHAT });
    // The hold was the estimate: the input at 4 characters a token, and the request's max_tokens.
    expect(w.reserved[0].heldTokens).toBe(String(Math.ceil(JSON.stringify([messages]).length / 4) + 300));
  });

  it('OpenAI chat stream: include_usage is asked for, every chunk reaches the caller, the last chunk\'s usage is recorded', async () => {
    const w = watched('chat-stream');
    const before = await dailyCost('chat-stream');
    const stream = await meterOpenAI(openai, w.options).chat.completions.create({ model: 'gpt-4o-mini', max_completion_tokens: 200, messages, stream: true });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(standIn.requests.at(-1)?.body.stream_options).toEqual({ include_usage: true });
    expect(chunks).toEqual(standIn.answers.at(-1));
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(w.recorded).toHaveLength(1);
    await expectCharged('chat-stream', before, w.recorded[0], w.reserved[0], { id: last.id, provider: 'openai', model: last.model, usage: last.usage as unknown as Record<string, unknown>, format: UsageFormat.USAGE_FORMAT_OPENAI_CHAT });
  });

  it('OpenAI responses.create, plain and streamed: the usage of the response (of response.completed) recorded under resp_...', async () => {
    const w = watched('responses');
    const client = meterOpenAI(openai, w.options);
    let before = await dailyCost('responses');
    const response = await client.responses.create({ model: 'gpt-4o', instructions: 'Answer in one sentence.', input: messages[1].content, max_output_tokens: 400 });
    const { output_text: text, ...asSent } = response; // output_text: the SDK's convenience, made from output
    expect(text).toMatch(/renews/);
    expect(standIn.answers.at(-1)).toEqual([asSent]);
    expect(response.id).toMatch(/^resp_/);
    await expectCharged('responses', before, w.recorded[0], w.reserved[0], { id: response.id, provider: 'openai', model: response.model, usage: response.usage as unknown as Record<string, unknown>, format: UsageFormat.USAGE_FORMAT_OPENAI_RESPONSES });

    before = await dailyCost('responses');
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const event of await client.responses.create({ model: 'gpt-4o-mini', input: 'Say the renewal rule again, shorter.', stream: true })) events.push(event);
    expect(events).toEqual(standIn.answers.at(-1));
    const completed = events.find((e): e is OpenAI.Responses.ResponseCompletedEvent => e.type === 'response.completed')!;
    await expectCharged('responses', before, w.recorded[1], w.reserved[1], { id: completed.response.id, provider: 'openai', model: completed.response.model, usage: completed.response.usage as unknown as Record<string, unknown>, format: UsageFormat.USAGE_FORMAT_OPENAI_RESPONSES });
  });

  it('Anthropic messages.create, plain and streamed: message_start\'s usage with message_delta\'s output_tokens recorded under msg_...', async () => {
    const w = watched('claude');
    const client = meterAnthropic(anthropic, w.options);
    let before = await dailyCost('claude');
    const message = await client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 512, system: messages[0].content, messages: [{ role: 'user', content: messages[1].content }] });
    expect(standIn.answers.at(-1)).toEqual([message]);
    expect(message.id).toMatch(/^msg_/);
    await expectCharged('claude', before, w.recorded[0], w.reserved[0], { id: message.id, provider: 'anthropic', model: message.model, usage: message.usage as unknown as Record<string, unknown>, format: UsageFormat.USAGE_FORMAT_ANTHROPIC_MESSAGES });

    before = await dailyCost('claude');
    const events: Anthropic.Messages.RawMessageStreamEvent[] = [];
    for await (const event of await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 256, messages: [{ role: 'user', content: messages[1].content }], stream: true })) events.push(event);
    expect(events).toEqual(standIn.answers.at(-1)?.filter((e) => (e as { type: string }).type !== 'ping')); // the SDK skips pings
    const start = events.find((e): e is Anthropic.Messages.RawMessageStartEvent => e.type === 'message_start')!;
    const delta = events.find((e): e is Anthropic.Messages.RawMessageDeltaEvent => e.type === 'message_delta')!;
    expect(start.message.usage.output_tokens).not.toBe(delta.usage.output_tokens);
    const usage = { ...start.message.usage, output_tokens: delta.usage.output_tokens };
    await expectCharged('claude', before, w.recorded[1], w.reserved[1], { id: start.message.id, provider: 'anthropic', model: start.message.model, usage: usage as unknown as Record<string, unknown>, format: UsageFormat.USAGE_FORMAT_ANTHROPIC_MESSAGES });
  });

  it('Anthropic messages.stream() (the SDK\'s helper goes through the metered create): finalMessage()\'s usage recorded', async () => {
    const w = watched('claude-helper');
    const before = await dailyCost('claude-helper');
    const final = await meterAnthropic(anthropic, w.options).messages.stream({ model: 'claude-sonnet-4-5', max_tokens: 128, messages: [{ role: 'user', content: 'One word: does it renew?' }] }).finalMessage();
    expect(w.recorded).toHaveLength(1);
    await expectCharged('claude-helper', before, w.recorded[0], w.reserved[0], { id: final.id, provider: 'anthropic', model: final.model, usage: final.usage as unknown as Record<string, unknown>, format: UsageFormat.USAGE_FORMAT_ANTHROPIC_MESSAGES });
  });

  it('a retried record is a replay: the same charge again under the response id counts nothing more', async () => {
    const w = watched('replay');
    const completion = await meterOpenAI(openai, w.options).chat.completions.create({ model: 'gpt-4o', max_tokens: 50, messages });
    const after = await dailyCost('replay');
    const again = await metering.recordCharge({ accountId: 'replay', userId: 'u1', provider: 'openai', model: completion.model, idempotencyKey: completion.id, usage: completion.usage as unknown as Record<string, unknown>, usageFormat: UsageFormat.USAGE_FORMAT_OPENAI_CHAT, reservationId: w.reserved[0].reservationId });
    expect(again.replayed).toBe(true);
    expect(again.charge?.chargeId).toBe(w.recorded[0].charge?.chargeId);
    expect(await dailyCost('replay')).toBe(after);
  });

  it('a provider call that fails releases its reservation, and nothing is charged', async () => {
    const w = watched('fails');
    standIn.failNext = 400;
    await expect(meterOpenAI(openai, w.options).chat.completions.create({ model: 'gpt-4o', max_tokens: 50, messages: [] })).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    standIn.failNext = 400;
    await expect(meterAnthropic(anthropic, w.options).messages.create({ model: 'claude-sonnet-4-5', max_tokens: 50, messages: [] })).rejects.toBeInstanceOf(Anthropic.BadRequestError);
    expect(w.reserved).toHaveLength(2);
    for (const r of w.reserved) expect((await metering.call('getReservation', { accountId: 'fails', reservationId: r.reservationId })).reservation?.status).toBe(ReservationStatus.RESERVATION_STATUS_RELEASED);
    expect(w.recorded).toEqual([]);
    expect(await dailyCost('fails')).toBe('0');
  });

  it('a stream abandoned before its usage arrived releases its reservation (OpenAI and Anthropic)', async () => {
    const w = watched('abandoned');
    standIn.stallNextStream = true;
    const chat = await meterOpenAI(openai, w.options).chat.completions.create({ model: 'gpt-4o', max_tokens: 50, messages, stream: true });
    for await (const chunk of chat) {
      expect(chunk.object).toBe('chat.completion.chunk');
      break;
    }
    standIn.stallNextStream = true;
    const claude = await meterAnthropic(anthropic, w.options).messages.create({ model: 'claude-sonnet-4-5', max_tokens: 50, messages: [{ role: 'user', content: 'Hi' }], stream: true });
    for await (const event of claude) {
      expect(event.type).toBe('message_start');
      break;
    }
    expect(w.reserved).toHaveLength(2);
    for (const r of w.reserved) expect((await metering.call('getReservation', { accountId: 'abandoned', reservationId: r.reservationId })).reservation?.status).toBe(ReservationStatus.RESERVATION_STATUS_RELEASED);
    expect(w.recorded).toEqual([]);
    expect(await dailyCost('abandoned')).toBe('0');
  });

  it('a denied budget throws BudgetExceededError with the QuotaFailure before any provider request', async () => {
    await metering.call('putLimit', { accountId: 'broke', period: LimitPeriod.LIMIT_PERIOD_DAY, measure: LimitMeasure.LIMIT_MEASURE_COST, amount: '0.000001' });
    await metering.recordCharge({ accountId: 'broke', userId: 'u1', provider: 'openai', model: 'gpt-4o', promptTokens: '100', completionTokens: '200' });
    const w = watched('broke');
    const requests = standIn.requests.length;
    const calls = [
      () => meterOpenAI(openai, w.options).chat.completions.create({ model: 'gpt-4o', max_tokens: 50, messages }),
      () => meterOpenAI(openai, w.options).chat.completions.create({ model: 'gpt-4o', max_tokens: 50, messages, stream: true }),
      () => meterOpenAI(openai, w.options).responses.create({ model: 'gpt-4o', input: 'Hi' }),
      () => meterAnthropic(anthropic, w.options).messages.create({ model: 'claude-sonnet-4-5', max_tokens: 50, messages: [{ role: 'user', content: 'Hi' }] }),
    ];
    for (const call of calls) {
      const err = await (call() as Promise<unknown>).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(BudgetExceededError);
      const denied = err as BudgetExceededError;
      expect(denied.reason).toBe('LIMIT_EXCEEDED');
      expect(denied.violations.map((v) => v.subject)).toEqual(['account:broke/day/cost']);
      expect(denied.message).toMatch(/limit/i);
    }
    expect(standIn.requests.length).toBe(requests);
    expect(w.reserved).toEqual([]);
  });

  it('runs the README\'s TypeScript example as written, the SDK pointed at the stand-in by OPENAI_BASE_URL: the two charges it prints are the server\'s', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'metering-readme-sdk-'));
    try {
      // The block as written (only the server's address replaced), bundled with the client's source for @metering/client.
      writeFileSync(join(dir, 'main.ts'), readmeBlock('## Capture without code: the OpenAI and Anthropic SDKs', 'ts').replaceAll('127.0.0.1:50051', server.address));
      buildSync({
        entryPoints: [join(dir, 'main.ts')], outfile: join(dir, 'main.js'), bundle: true, platform: 'node', format: 'cjs', target: 'node20', logLevel: 'error',
        alias: { '@metering/client': join(ROOT, 'libs/client/src/index.ts'), '@metering/contracts': join(ROOT, 'libs/contracts/src/index.ts') }, nodePaths: [join(ROOT, 'node_modules')],
      });
      const before = standIn.requests.length;
      const { stdout } = await promisify(execFile)(process.execPath, [join(dir, 'main.js')], { env: { PATH: process.env.PATH ?? '', OPENAI_BASE_URL: `${standIn.url}/v1`, OPENAI_API_KEY: 'sk-stand-in' } });
      const printed = [...stdout.matchAll(/charged (\S+) USD/g)].map((m) => m[1]);
      expect(printed).toHaveLength(2);
      expect(stdout).toContain('The contract renews yearly unless cancelled in writing.');
      const ids = standIn.answers.slice(before).map((sent) => (sent[0] as { id: string }).id);
      const listed = await metering.call('listCharges', { accountId: 'acme', startDate: today(), endDate: today() });
      expect(ids.map((id) => listed.charges.find((c) => c.idempotencyKey === id)?.totalCost?.amount)).toEqual(printed);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an outage: fail-open keeps the charges in the bounded queue and records them once after the restart; fail-closed and a full queue refuse before the provider', async () => {
    const recordedLater: RecordChargeResponse[] = [];
    const queue = new RecordQueue(metering, { maxSize: 2, retryMs: 3_600_000, onRecorded: (r) => recordedLater.push(r) });
    const reserved: Reservation[] = [];
    const open = meterOpenAI(openai, { metering, accountId: 'outage', userId: 'u1', queue, onReserved: (r) => reserved.push(r) });
    const closed = meterAnthropic(anthropic, { metering, accountId: 'outage', userId: 'u1', queue, outage: 'fail-closed' });
    const before = await dailyCost('outage');

    // 1. The metering server stops while the provider call is in flight (after the reservation).
    standIn.beforeAnswer = async () => {
      standIn.beforeAnswer = undefined;
      await server.stop();
      expect(server.child.exitCode).not.toBeNull();
    };
    const first = await open.chat.completions.create({ model: 'gpt-4o', max_tokens: 80, messages });
    expect(reserved).toHaveLength(1);
    expect(queue.pending()).toEqual([expect.objectContaining({ idempotencyKey: first.id, reservationId: reserved[0].reservationId, accountId: 'outage' })]);

    // 2. Metering down: fail-open calls the provider unreserved and queues the charge.
    const second = await open.responses.create({ model: 'gpt-4o', input: 'And the notice period?', max_output_tokens: 100 });
    expect(queue.size).toBe(2);
    expect(queue.pending()[1]).toEqual(expect.objectContaining({ idempotencyKey: second.id, reservationId: '' }));
    const held = queue.pending();

    // 3. The queue is full, and fail-closed: refused before any provider request.
    const requests = standIn.requests.length;
    await expect(open.chat.completions.create({ model: 'gpt-4o', max_tokens: 80, messages })).rejects.toBeInstanceOf(MeteringUnavailableError);
    await expect(closed.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 80, messages: [{ role: 'user', content: 'Hi' }] })).rejects.toBeInstanceOf(MeteringUnavailableError);
    expect(standIn.requests.length).toBe(requests);
    expect(await queue.flush()).toEqual({ recorded: 0, remaining: 2 });

    // 4. Metering is back: flush records both, in order, each priced as RecordCharge prices its usage object.
    server = await startServer(tdb.config, { PORT: String(port) });
    // The client's channel reconnects on its own backoff: flush until it has (a bounded number of tries).
    for (let tries = 0; queue.size > 0 && tries < 120; tries++) {
      await queue.flush();
      if (queue.size) await new Promise((resolve) => setTimeout(resolve, 500));
    }
    expect(queue.size).toBe(0);
    expect(recordedLater.map((r) => [r.charge?.idempotencyKey, r.replayed])).toEqual([[first.id, false], [second.id, false]]);
    const byHand = [
      await metering.recordCharge({ accountId: 'by-hand', userId: 'u1', provider: 'openai', model: first.model, idempotencyKey: randomUUID(), usage: first.usage as unknown as Record<string, unknown>, usageFormat: UsageFormat.USAGE_FORMAT_OPENAI_CHAT }),
      await metering.recordCharge({ accountId: 'by-hand', userId: 'u1', provider: 'openai', model: second.model, idempotencyKey: randomUUID(), usage: second.usage as unknown as Record<string, unknown>, usageFormat: UsageFormat.USAGE_FORMAT_OPENAI_RESPONSES }),
    ];
    expect(recordedLater.map((r) => r.charge?.totalCost?.amount)).toEqual(byHand.map((r) => r.charge?.totalCost?.amount));
    const sum = byHand.reduce((s, r) => s.plus(r.charge!.totalCost!.amount), new Decimal(0));
    expect(new Decimal(await dailyCost('outage')).minus(before).toString()).toBe(sum.toString());
    // The first call's hold was settled by its queued charge.
    expect(recordedLater[0].reservation?.status).toBe(ReservationStatus.RESERVATION_STATUS_SETTLED);
    expect(recordedLater[0].reservation?.reservationId).toBe(reserved[0].reservationId);

    // 5. The same charges sent again (a process that persisted pending() and retries them) are replays: nothing more counted.
    for (const charge of held) expect(queue.enqueue(charge)).toBe(true);
    expect(await queue.flush()).toEqual({ recorded: 2, remaining: 0 });
    expect(recordedLater.slice(2).map((r) => r.replayed)).toEqual([true, true]);
    expect(new Decimal(await dailyCost('outage')).minus(before).toString()).toBe(sum.toString());
    queue.close();
  });
});
