/**
 * llmbox serve: an OpenAI-compatible HTTP server over the in-process engine (/v1/models,
 * /v1/completions with echo and log-probabilities, /v1/chat/completions with streaming).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ChatFormat, type ChatTemplate } from '../eval/chat.js';
import type { GenerateOptions, GenerateResult } from '../models/generate.js';
import type { LoadedModel } from '../models/load.js';
import type { TargetScore } from '../models/score.js';
import { ServeEngine } from './engine.js';
import {
  ApiError,
  parseChat,
  parseCompletion,
  type ChatRequest,
  type CompletionRequest,
  type SamplingParams,
} from './protocol.js';
import { DEFAULTS } from '../util/defaults.js';

export interface ServeOptions {
  /** Default 127.0.0.1: the server is reachable from this machine only unless a host is given. */
  host?: string;
  /** Default 8000; 0 picks a free port. */
  port?: number;
  /** The model id clients name (default: the model folder's name). */
  modelName?: string;
  /** Clients must send `Authorization: Bearer <apiKey>` when set. */
  apiKey?: string;
  /** Largest request body (default 4 MiB). */
  maxBodyBytes?: number;
  /** Largest max_tokens a request may ask for (default: the context window). */
  maxTokens?: number;
  batchSize?: number;
  maxBatchTokens?: number;
  /** How long an idle server gathers requests before running the first batch (default 2 ms). */
  batchWindowMs?: number;
  /** Chat prompts: a named template or Jinja (default: the tokenizer's chat template, else ChatML). */
  chatTemplate?: ChatTemplate;
  /** One line per request (method, path, status, milliseconds). */
  log?: (line: string) => void;
}

export interface RunningServer {
  url: string;
  port: number;
  engine: ServeEngine;
  close(): Promise<void>;
}

type Json = Record<string, unknown>;

const id = (prefix: string) => `${prefix}-${randomBytes(12).toString('hex')}`;
const now = () => Math.floor(Date.now() / 1000);

export async function serve(loaded: LoadedModel, opts: ServeOptions = {}): Promise<RunningServer> {
  if (!loaded.tokenizer) throw new ApiError(500, 'llmbox serve needs a tokenizer (tokenizer.json in the model folder)');
  const engine = new ServeEngine(loaded, {
    batchSize: opts.batchSize ?? DEFAULTS.serve.batchSize,
    maxBatchTokens: opts.maxBatchTokens ?? DEFAULTS.serve.maxBatchTokens,
    batchWindowMs: opts.batchWindowMs ?? DEFAULTS.serve.batchWindowMs,
  });
  const name = opts.modelName ?? loaded.name ?? loaded.dir.split('/').filter(Boolean).at(-1)!;
  const limits = { maxTokens: opts.maxTokens ?? engine.maxLen };
  const api = new Api(engine, name, limits, opts);

  const server = createServer((req, res) => {
    const started = Date.now();
    res.on('finish', () => opts.log?.(`${req.method} ${req.url} ${res.statusCode} ${Date.now() - started} ms`));
    api.handle(req, res).catch((e) => sendError(res, e));
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8000, opts.host ?? '127.0.0.1', () => resolve());
  });
  const { port, address } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  return {
    url: `http://${host}:${port}/v1`,
    port,
    engine,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
  res.end(data);
}

function sendError(res: ServerResponse, e: unknown): void {
  const err = e instanceof ApiError ? e : new ApiError(500, `internal error: ${(e as Error).message ?? e}`);
  if (res.headersSent) {
    // A stream already started: report the error as its last event.
    res.end(`data: ${JSON.stringify(err.toJSON())}\n\n`);
    return;
  }
  sendJson(res, err.status, err.toJSON());
}

class Api {
  private readonly format: ChatFormat;
  constructor(
    private readonly engine: ServeEngine,
    private readonly name: string,
    private readonly limits: { maxTokens: number },
    private readonly opts: ServeOptions,
  ) {
    this.format = new ChatFormat(engine.loaded.tokenizer!, { template: opts.chatTemplate });
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0].replace(/\/+$/, '');
    this.authorize(req);
    if (path === '/v1/models' || path === '/v1/models/' + this.name) {
      if (req.method !== 'GET') throw new ApiError(405, `${req.method} is not allowed on ${path}`);
      const card = {
        id: this.name,
        object: 'model',
        created: now(),
        owned_by: 'llmbox',
        max_model_len: this.engine.maxLen,
      };
      return sendJson(res, 200, path === '/v1/models' ? { object: 'list', data: [card] } : card);
    }
    if (path === '/health') return sendJson(res, 200, { status: 'ok' });
    if (path !== '/v1/completions' && path !== '/v1/chat/completions')
      throw new ApiError(404, `no route ${path}: this server has /v1/models, /v1/completions and /v1/chat/completions`);
    if (req.method !== 'POST') throw new ApiError(405, `${req.method} is not allowed on ${path}: use POST`);
    const body = await readBody(req, this.opts.maxBodyBytes ?? 4 * 2 ** 20);
    if (path === '/v1/completions') return this.completions(parseCompletion(body, this.limits), res);
    return this.chat(parseChat(body, this.limits), res);
  }

  private authorize(req: IncomingMessage): void {
    if (this.opts.apiKey === undefined) return;
    const given = Buffer.from((req.headers.authorization ?? '').replace(/^Bearer\s+/i, ''));
    const want = Buffer.from(this.opts.apiKey);
    if (given.length !== want.length || !timingSafeEqual(given, want))
      throw new ApiError(401, 'invalid or missing API key (Authorization: Bearer ...)', null, 'invalid_api_key');
  }

  private checkModel(model: string): void {
    if (model !== this.name)
      throw new ApiError(
        404,
        `model ${model} is not served here; this server serves ${this.name}`,
        'model',
        'model_not_found',
      );
  }

  /** Prompt ids within the window, leaving room for the reply; max_tokens resolved. */
  private fit(ids: number[], p: SamplingParams, truncate?: number): { ids: number[]; maxTokens: number } {
    if (truncate !== undefined) ids = ids.slice(-truncate);
    if (ids.length === 0) throw new ApiError(400, 'the prompt encodes to no tokens', 'prompt');
    const room = this.engine.maxLen - ids.length;
    const maxTokens = p.maxTokens ?? Math.max(0, room);
    if (room < maxTokens) {
      throw new ApiError(
        400,
        `this model's maximum context length is ${this.engine.maxLen} tokens; the prompt has ${ids.length} and max_tokens is ${maxTokens}`,
        'max_tokens',
        'context_length_exceeded',
      );
    }
    return { ids, maxTokens };
  }

  private decodeOptions(
    p: SamplingParams,
    maxTokens: number,
    sample: number,
    extraStop: string[] = [],
  ): GenerateOptions {
    return {
      maxNewTokens: maxTokens,
      temperature: p.temperature,
      topP: p.topP,
      topK: p.topK,
      repetitionPenalty: p.repetitionPenalty,
      // n samples of one request differ; a request without a seed draws a fresh one.
      seed: p.seed === undefined ? undefined : p.seed + sample,
      stop: [...p.stop, ...extraStop],
      logprobs: p.logprobs,
    };
  }

  /** OpenAI's completions log-probabilities for tokens `from..` of ids (the first prompt token has none). */
  private logprobsBlock(ids: number[], scores: (TargetScore | null)[], offset0: number, from = 0) {
    const { pieces, offsets } = this.engine.pieces(ids);
    const tops = scores.map((s, i) => {
      if (!s) return null;
      const k = from + i;
      const top: Record<string, number> = { [pieces[k]]: s.logprob };
      for (const [v, lp] of s.top ?? [])
        top[v === ids[k] ? pieces[k] : this.engine.tokenText(ids.slice(0, k), v)] ??= lp;
      return top;
    });
    return {
      tokens: pieces.slice(from),
      token_logprobs: scores.map((s) => (s ? s.logprob : null)),
      top_logprobs: tops,
      text_offset: offsets.slice(from).map((o) => o - offsets[from] + offset0),
    };
  }

  private async completions(r: CompletionRequest, res: ServerResponse): Promise<void> {
    this.checkModel(r.model);
    if (r.stream) return this.streamCompletion(r, res);
    const choices: Json[] = [];
    let promptTokens = 0,
      completionTokens = 0;
    await Promise.all(
      r.prompts.map(async (prompt, pi) => {
        const { ids, maxTokens } = this.fit(this.engine.encode(prompt), r, r.truncatePromptTokens);
        promptTokens += ids.length;
        const promptText = this.engine.pieces(ids).pieces.join('');
        // The echoed prompt is scored once for all n replies.
        const echoed = r.echo && r.logprobs !== undefined ? await this.engine.score(ids, r.logprobs) : undefined;
        const replies =
          maxTokens === 0
            ? [undefined]
            : await Promise.all(
                Array.from({ length: r.n }, (_, j) => this.engine.generate(ids, this.decodeOptions(r, maxTokens, j))),
              );
        replies.forEach((g, j) => {
          completionTokens += g?.ids.length ?? 0;
          choices.push({
            index: pi * r.n + j,
            text: (r.echo ? promptText : '') + (g?.text ?? ''),
            logprobs:
              r.logprobs === undefined ? null : this.completionLogprobs(ids, echoed, g, r.echo ? promptText.length : 0),
            finish_reason: g?.finishReason ?? 'length',
          });
        });
      }),
    );
    choices.sort((a, b) => (a.index as number) - (b.index as number));
    sendJson(res, 200, {
      id: id('cmpl'),
      object: 'text_completion',
      created: now(),
      model: this.name,
      choices,
      usage: usage(promptTokens, completionTokens),
    });
  }

  private completionLogprobs(
    ids: number[],
    echoed: TargetScore[] | undefined,
    g: GenerateResult | undefined,
    genOffset: number,
  ) {
    const block = {
      tokens: [] as string[],
      token_logprobs: [] as (number | null)[],
      top_logprobs: [] as (Record<string, number> | null)[],
      text_offset: [] as number[],
    };
    const add = (b: typeof block) =>
      (Object.keys(block) as (keyof typeof block)[]).forEach((k) => (block[k] as unknown[]).push(...b[k]));
    if (echoed) add(this.logprobsBlock(ids, [null, ...echoed], 0));
    if (g?.logprobs?.length) {
      const scores = g.logprobs.map((l) => ({ logprob: l.logprob, isArgmax: l.top[0]?.[0] === l.id, top: l.top }));
      add(this.logprobsBlock([...ids, ...g.ids], scores, genOffset, ids.length));
    }
    return block;
  }

  private async streamCompletion(r: CompletionRequest, res: ServerResponse): Promise<void> {
    if (r.prompts.length > 1 || r.n > 1 || r.echo || r.logprobs !== undefined)
      throw new ApiError(400, 'streaming takes one prompt, n = 1, no echo and no logprobs', 'stream');
    const { ids, maxTokens } = this.fit(this.engine.encode(r.prompts[0]), r, r.truncatePromptTokens);
    const cid = id('cmpl'),
      created = now();
    const chunk = (text: string, finish: string | null) => ({
      id: cid,
      object: 'text_completion',
      created,
      model: this.name,
      choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
    });
    startEvents(res);
    const g = await this.engine.stream(ids, this.decodeOptions(r, maxTokens, 0), (t) => event(res, chunk(t, null)));
    event(res, { ...chunk('', g.finishReason), usage: usage(ids.length, g.ids.length) });
    endEvents(res);
  }

  private async chat(r: ChatRequest, res: ServerResponse): Promise<void> {
    this.checkModel(r.model);
    const prompt = this.format.render(r.messages);
    // BOS as the tokenizer adds it, or as the template writes it: the ids local chat-mode evaluation sees.
    let ids = this.engine.encode(prompt.text);
    const bos = this.engine.loaded.tokenizer!.bosTokenId;
    if (this.format.writesBos && bos !== undefined && ids[0] !== bos) ids = [bos, ...ids];
    const fitted = this.fit(ids, r, r.truncatePromptTokens);
    ids = fitted.ids;
    const maxTokens = fitted.maxTokens;
    const cid = id('chatcmpl'),
      created = now();
    if (r.stream) {
      if (r.n > 1 || r.logprobs !== undefined)
        throw new ApiError(400, 'streaming takes n = 1 and no logprobs', 'stream');
      const chunk = (delta: Json, finish: string | null) => ({
        id: cid,
        object: 'chat.completion.chunk',
        created,
        model: this.name,
        choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
      });
      startEvents(res);
      event(res, chunk({ role: 'assistant', content: '' }, null));
      const g = await this.engine.stream(ids, this.decodeOptions(r, maxTokens, 0, prompt.stop), (t) =>
        event(res, chunk({ content: t }, null)),
      );
      event(res, { ...chunk({}, g.finishReason), usage: usage(ids.length, g.ids.length) });
      return endEvents(res);
    }
    const replies = await Promise.all(
      Array.from({ length: r.n }, (_, j) =>
        this.engine.generate(ids, this.decodeOptions(r, maxTokens, j, prompt.stop)),
      ),
    );
    const choices = replies.map((g, index) => ({
      index,
      message: { role: 'assistant', content: g.text },
      logprobs: r.logprobs === undefined ? null : { content: this.chatLogprobs(ids, g) },
      finish_reason: g.finishReason,
    }));
    sendJson(res, 200, {
      id: cid,
      object: 'chat.completion',
      created,
      model: this.name,
      choices,
      usage: usage(
        ids.length,
        replies.reduce((a, g) => a + g.ids.length, 0),
      ),
    });
  }

  private chatLogprobs(ids: number[], g: GenerateResult) {
    const all = [...ids, ...g.ids];
    const { pieces } = this.engine.pieces(all);
    const entry = (token: string, logprob: number) => ({ token, logprob, bytes: [...Buffer.from(token)] });
    return (g.logprobs ?? []).map((l, i) => {
      const k = ids.length + i;
      return {
        ...entry(pieces[k], l.logprob),
        top_logprobs: l.top.map(([v, lp]) =>
          entry(v === l.id ? pieces[k] : this.engine.tokenText(all.slice(0, k), v), lp),
        ),
      };
    });
  }
}

const usage = (prompt: number, completion: number) => ({
  prompt_tokens: prompt,
  completion_tokens: completion,
  total_tokens: prompt + completion,
});

function startEvents(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
}
function event(res: ServerResponse, data: unknown): void {
  res.write(`data: ${JSON.stringify(data)}\n\n`);
}
function endEvents(res: ServerResponse): void {
  res.end('data: [DONE]\n\n');
}

async function readBody(req: IncomingMessage, limit: number): Promise<Json> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit)
    throw new ApiError(413, `request body of ${declared} bytes is over this server's limit of ${limit}`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > limit) throw new ApiError(413, `request body is over this server's limit of ${limit} bytes`);
    chunks.push(c as Buffer);
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (e) {
    throw new ApiError(400, `request body is not valid JSON: ${(e as Error).message}`);
  }
  if (!body || typeof body !== 'object' || Array.isArray(body))
    throw new ApiError(400, 'request body must be a JSON object');
  return body as Json;
}
