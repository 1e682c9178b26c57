/**
 * The OpenAI request bodies llmbox serve accepts, read field by field: a wrong type or value is a
 * 400 naming the parameter (OpenAI's error shape), never a guess.
 */
import type { Message, Role } from '../data/records.js';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }
  toJSON() {
    return {
      error: {
        message: this.message,
        type:
          this.status === 401 ? 'authentication_error' : this.status >= 500 ? 'server_error' : 'invalid_request_error',
        param: this.param,
        code: this.code,
      },
    };
  }
}

type Body = Record<string, unknown>;

export interface SamplingParams {
  /** Undefined: as many as the context window leaves room for. */
  maxTokens?: number;
  temperature: number;
  topP?: number;
  topK?: number;
  repetitionPenalty?: number;
  seed?: number;
  n: number;
  stop: string[];
  stream: boolean;
  /** Alternatives per token to report; undefined: no log-probabilities. */
  logprobs?: number;
}

export interface CompletionRequest extends SamplingParams {
  model: string;
  /** One entry per prompt: text, or token ids. */
  prompts: (string | number[])[];
  echo: boolean;
  /** Keep only the last k prompt tokens (vLLM's truncate_prompt_tokens). */
  truncatePromptTokens?: number;
}

export interface ChatRequest extends SamplingParams {
  model: string;
  messages: Message[];
  truncatePromptTokens?: number;
}

function num(body: Body, key: string, opts: { min?: number; max?: number; int?: boolean } = {}): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || (opts.int && !Number.isInteger(v))) {
    throw new ApiError(400, `${key} must be ${opts.int ? 'an integer' : 'a number'}, got ${JSON.stringify(v)}`, key);
  }
  if ((opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) {
    throw new ApiError(400, `${key} must be in [${opts.min ?? '-inf'}, ${opts.max ?? 'inf'}], got ${v}`, key);
  }
  return v;
}

function bool(body: Body, key: string): boolean {
  const v = body[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw new ApiError(400, `${key} must be true or false, got ${JSON.stringify(v)}`, key);
  return v;
}

function stopList(body: Body): string[] {
  const v = body.stop;
  if (v === undefined || v === null) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.some((s) => typeof s !== 'string') || list.length > 16)
    throw new ApiError(400, 'stop must be a string or a list of at most 16 strings', 'stop');
  return (list as string[]).filter((s) => s.length > 0);
}

function modelName(body: Body): string {
  if (typeof body.model !== 'string' || !body.model)
    throw new ApiError(400, 'model is required (see /v1/models)', 'model');
  return body.model;
}

/** Fields this server does not implement: refused rather than ignored, since ignoring them changes results. */
function refuse(body: Body, keys: string[]): void {
  for (const k of keys) {
    const v = body[k];
    const neutral =
      v === undefined ||
      v === null ||
      v === 0 ||
      (k === 'best_of' && v === 1) ||
      (typeof v === 'object' && Object.keys(v).length === 0);
    if (!neutral) throw new ApiError(400, `${k} is not supported by llmbox serve`, k);
  }
}

function sampling(
  body: Body,
  limits: { maxTokens: number },
  defaultMaxTokens: number | undefined,
): Omit<SamplingParams, 'logprobs'> {
  const maxTokens =
    num(body, 'max_completion_tokens', { min: 0, int: true }) ??
    num(body, 'max_tokens', { min: 0, int: true }) ??
    defaultMaxTokens;
  if (maxTokens !== undefined && maxTokens > limits.maxTokens)
    throw new ApiError(
      400,
      `max_tokens ${maxTokens} is above this server's limit of ${limits.maxTokens}`,
      'max_tokens',
    );
  const temperature = num(body, 'temperature', { min: 0, max: 2 }) ?? 1;
  const topP = num(body, 'top_p', { min: 0, max: 1 });
  const topK = num(body, 'top_k', { min: -1, int: true });
  const repetitionPenalty = num(body, 'repetition_penalty', { min: 0.01, max: 10 });
  refuse(body, [
    'presence_penalty',
    'frequency_penalty',
    'logit_bias',
    'suffix',
    'best_of',
    'tools',
    'response_format',
  ]);
  return {
    maxTokens,
    temperature,
    topP: topP === 1 ? undefined : topP,
    topK: topK === undefined || topK <= 0 ? undefined : topK,
    repetitionPenalty,
    seed: num(body, 'seed', { int: true }),
    n: num(body, 'n', { min: 1, max: 16, int: true }) ?? 1,
    stop: stopList(body),
    stream: bool(body, 'stream'),
  };
}

function prompts(v: unknown): (string | number[])[] {
  const ids = (x: unknown): x is number[] =>
    Array.isArray(x) && x.length > 0 && x.every((t) => Number.isInteger(t) && (t as number) >= 0);
  if (typeof v === 'string') return [v];
  if (ids(v)) return [v];
  if (Array.isArray(v) && v.length > 0 && v.every((p) => typeof p === 'string' || ids(p)))
    return v as (string | number[])[];
  throw new ApiError(
    400,
    'prompt must be a string, a list of strings, a list of token ids or a list of such lists',
    'prompt',
  );
}

export function parseCompletion(body: Body, limits: { maxTokens: number }): CompletionRequest {
  const echo = bool(body, 'echo');
  const logprobs = num(body, 'logprobs', { min: 0, max: 20, int: true });
  return {
    model: modelName(body),
    prompts: prompts(body.prompt),
    echo,
    truncatePromptTokens: num(body, 'truncate_prompt_tokens', { min: 1, int: true }),
    ...sampling(body, limits, 16),
    logprobs,
  };
}

const ROLES: Role[] = ['system', 'user', 'assistant', 'tool'];

function messageContent(m: Body, i: number): string {
  if (typeof m.content === 'string') return m.content;
  // Content parts: text only.
  if (
    Array.isArray(m.content) &&
    m.content.every(
      (p) => p && typeof p === 'object' && (p as Body).type === 'text' && typeof (p as Body).text === 'string',
    )
  ) {
    return m.content.map((p) => (p as Body).text as string).join('');
  }
  throw new ApiError(400, `messages[${i}].content must be a string or a list of text parts`, `messages[${i}].content`);
}

export function parseChat(body: Body, limits: { maxTokens: number }): ChatRequest {
  const raw = body.messages;
  if (!Array.isArray(raw) || raw.length === 0) throw new ApiError(400, 'messages must be a non-empty list', 'messages');
  const messages = raw.map((m, i): Message => {
    if (!m || typeof m !== 'object') throw new ApiError(400, `messages[${i}] must be an object`, `messages[${i}]`);
    const role = (m as Body).role;
    const r = role === 'developer' ? 'system' : role;
    if (typeof r !== 'string' || !ROLES.includes(r as Role))
      throw new ApiError(
        400,
        `messages[${i}].role must be one of system, user, assistant, tool`,
        `messages[${i}].role`,
      );
    return { role: r as Role, content: messageContent(m as Body, i) };
  });
  const wantLogprobs = bool(body, 'logprobs');
  const top = num(body, 'top_logprobs', { min: 0, max: 20, int: true });
  if (top !== undefined && !wantLogprobs) throw new ApiError(400, 'top_logprobs needs logprobs: true', 'top_logprobs');
  return {
    model: modelName(body),
    messages,
    truncatePromptTokens: num(body, 'truncate_prompt_tokens', { min: 1, int: true }),
    ...sampling(body, limits, undefined),
    logprobs: wantLogprobs ? (top ?? 0) : undefined,
  };
}
