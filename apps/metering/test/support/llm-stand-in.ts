import { randomBytes } from 'node:crypto';
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A stand-in for the OpenAI and Anthropic HTTP APIs: a real node:http server on 127.0.0.1 that
 * answers the official SDKs (pointed at it with baseURL) in the providers' wire formats, never
 * the real providers:
 * - POST /v1/chat/completions: a chat.completion, or with stream: true the SSE chunks
 *   (chat.completion.chunk), the usage in a last chunk with empty choices when
 *   stream_options.include_usage is set, then `data: [DONE]`;
 * - POST /v1/responses: a response object, or the SSE events response.created ...
 *   response.output_text.delta ... response.completed (the usage in the completed response);
 * - POST /v1/messages: an Anthropic message, or the SSE events message_start (input and cache
 *   counts) ... content_block_delta ... message_delta (the cumulative output_tokens) message_stop.
 * The token counts follow from the request (its input's length, its max tokens), so different
 * calls have different usage. Every request is kept in `requests`.
 */

export interface StandInRequest {
  path: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
}

export interface StandIn {
  /** e.g. http://127.0.0.1:43121 (Anthropic's baseURL; OpenAI's is `${url}/v1`). */
  url: string;
  requests: StandInRequest[];
  /** Every body sent back (the JSON, or each SSE event's data), by request. */
  answers: unknown[][];
  /** The next request is answered with this HTTP error in the provider's error format. */
  failNext?: number;
  /** The next stream sends its first event, then waits until the client goes away. */
  stallNextStream?: boolean;
  /** Awaited before each answer (to stop the metering server while a call is in flight). */
  beforeAnswer?: () => Promise<void>;
  close(): Promise<void>;
}

const TEXT = ['The', ' contract', ' renews', ' yearly', ' unless', ' cancelled', ' in', ' writing', '.'];
const id = (prefix: string, n = 12) => `${prefix}${randomBytes(n).toString('hex')}`;
const now = () => Math.floor(Date.now() / 1000);
/** The dated snapshot OpenAI answers for an alias (the model field of its responses). */
const SNAPSHOTS: Record<string, string> = { 'gpt-4o': 'gpt-4o-2024-08-06', 'gpt-4o-mini': 'gpt-4o-mini-2024-07-18' };
const snapshot = (model: unknown) => SNAPSHOTS[String(model)] ?? String(model);

/** Input tokens from the request's input (4 characters a token), output tokens within its maximum. */
function counts(body: Record<string, unknown>, ...inputKeys: string[]) {
  const input = Math.max(1, Math.ceil(JSON.stringify(inputKeys.map((k) => body[k] ?? null)).length / 4));
  const max = Number(body.max_completion_tokens ?? body.max_tokens ?? body.max_output_tokens ?? 1000);
  const output = Math.min(max, 17 + (input % 23));
  const cached = input >= 64 ? 64 : 0;
  return { input, output, cached };
}

export async function startStandIn(): Promise<StandIn> {
  const standIn: StandIn = { url: '', requests: [], answers: [], close: async () => undefined };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
    const path = (req.url ?? '').split('?')[0];
    standIn.requests.push({ path, headers: req.headers, body });
    const sent: unknown[] = [];
    standIn.answers.push(sent);
    await standIn.beforeAnswer?.();
    const anthropic = path === '/v1/messages';

    if (standIn.failNext) {
      const code = standIn.failNext;
      standIn.failNext = undefined;
      const error = anthropic
        ? { type: 'error', error: { type: 'invalid_request_error', message: 'messages: at least one message is required' }, request_id: id('req_') }
        : { error: { message: "Invalid value for 'messages': at least one message is required.", type: 'invalid_request_error', param: 'messages', code: null } };
      sent.push(error);
      res.writeHead(code, { 'content-type': 'application/json', ...(anthropic ? { 'request-id': id('req_') } : { 'x-request-id': id('req_') }) });
      res.end(JSON.stringify(error));
      return;
    }

    const stall = body.stream === true && standIn.stallNextStream;
    if (stall) standIn.stallNextStream = false;
    const json = (value: unknown) => {
      sent.push(value);
      res.writeHead(200, { 'content-type': 'application/json', ...(anthropic ? { 'request-id': id('req_') } : { 'x-request-id': id('req_'), 'openai-processing-ms': '212' }) });
      res.end(JSON.stringify(value));
    };
    /** Sends SSE events; a stalled stream sends the first and then waits for the client to go away. */
    const sse = async (events: Array<{ event?: string; data: unknown }>) => {
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
      for (const e of stall ? events.slice(0, 1) : events) {
        if (e.data !== '[DONE]') sent.push(e.data);
        res.write(`${e.event ? `event: ${e.event}\n` : ''}data: ${typeof e.data === 'string' ? e.data : JSON.stringify(e.data)}\n\n`);
      }
      if (stall) {
        await new Promise((resolve) => res.once('close', resolve));
        return;
      }
      res.end();
    };

    if (path === '/v1/chat/completions') {
      const { input, output, cached } = counts(body, 'messages');
      const usage = {
        prompt_tokens: input,
        completion_tokens: output,
        total_tokens: input + output,
        prompt_tokens_details: { cached_tokens: cached, audio_tokens: 0 },
        completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
      };
      const head = { id: id('chatcmpl-'), created: now(), model: snapshot(body.model), service_tier: 'default', system_fingerprint: 'fp_07871e2ad8' };
      if (body.stream !== true) {
        return json({
          ...head,
          object: 'chat.completion',
          choices: [{ index: 0, message: { role: 'assistant', content: TEXT.join(''), refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' }],
          usage,
        });
      }
      const withUsage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
      const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) => ({ ...head, object: 'chat.completion.chunk', choices, ...(withUsage ? { usage: null } : {}), ...extra });
      return sse([
        { data: chunk([{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }]) },
        ...TEXT.map((t) => ({ data: chunk([{ index: 0, delta: { content: t }, logprobs: null, finish_reason: null }]) })),
        { data: chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }]) },
        ...(withUsage ? [{ data: chunk([], { usage }) }] : []),
        { data: '[DONE]' },
      ]);
    }

    if (path === '/v1/responses') {
      const { input, output, cached } = counts(body, 'instructions', 'input');
      const messageId = id('msg_');
      const base = {
        id: id('resp_'),
        object: 'response',
        created_at: now(),
        model: snapshot(body.model),
        instructions: body.instructions ?? null,
        max_output_tokens: body.max_output_tokens ?? null,
        parallel_tool_calls: true,
        previous_response_id: null,
        reasoning: { effort: null, summary: null },
        service_tier: 'default',
        store: true,
        temperature: 1.0,
        text: { format: { type: 'text' } },
        tool_choice: 'auto',
        tools: [],
        top_p: 1.0,
        truncation: 'disabled',
        user: null,
        metadata: {},
        error: null,
        incomplete_details: null,
      };
      const item = { type: 'message', id: messageId, status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: TEXT.join(''), annotations: [] }] };
      const done = {
        ...base,
        status: 'completed',
        output: [item],
        usage: { input_tokens: input, input_tokens_details: { cached_tokens: cached }, output_tokens: output, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: input + output },
      };
      if (body.stream !== true) return json(done);
      let seq = 0;
      const ev = (type: string, data: Record<string, unknown>) => ({ event: type, data: { type, sequence_number: seq++, ...data } });
      return sse([
        ev('response.created', { response: { ...base, status: 'in_progress', output: [], usage: null } }),
        ev('response.in_progress', { response: { ...base, status: 'in_progress', output: [], usage: null } }),
        ev('response.output_item.added', { output_index: 0, item: { ...item, status: 'in_progress', content: [] } }),
        ev('response.content_part.added', { item_id: messageId, output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } }),
        ...TEXT.map((t) => ev('response.output_text.delta', { item_id: messageId, output_index: 0, content_index: 0, delta: t })),
        ev('response.output_text.done', { item_id: messageId, output_index: 0, content_index: 0, text: TEXT.join('') }),
        ev('response.content_part.done', { item_id: messageId, output_index: 0, content_index: 0, part: item.content[0] }),
        ev('response.output_item.done', { output_index: 0, item }),
        ev('response.completed', { response: done }),
      ]);
    }

    if (anthropic) {
      const { input, output, cached } = counts(body, 'system', 'messages', 'tools');
      const model = String(body.model);
      const usage = {
        input_tokens: input,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: cached,
        cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 },
        output_tokens: output,
        service_tier: 'standard',
      };
      const message = { id: id('msg_01'), type: 'message', role: 'assistant', model, content: [{ type: 'text', text: TEXT.join('') }], stop_reason: 'end_turn', stop_sequence: null, usage };
      if (body.stream !== true) return json(message);
      return sse([
        { event: 'message_start', data: { type: 'message_start', message: { ...message, content: [], stop_reason: null, usage: { ...usage, output_tokens: 1 } } } },
        { event: 'content_block_start', data: { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } } },
        { event: 'ping', data: { type: 'ping' } },
        ...TEXT.map((t) => ({ event: 'content_block_delta', data: { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: t } } })),
        { event: 'content_block_stop', data: { type: 'content_block_stop', index: 0 } },
        { event: 'message_delta', data: { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: output } } },
        { event: 'message_stop', data: { type: 'message_stop' } },
      ]);
    }

    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: `Unknown request URL: POST ${path}`, type: 'invalid_request_error', param: null, code: 'unknown_url' } }));
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: err.message, type: 'server_error' } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  standIn.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  standIn.close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return standIn;
}
