import { LlmboxError } from '../errors.js';
import type { Message } from '../data/records.js';
import type { Method } from './tasks/types.js';

export interface LoglikelihoodRequest {
  context: string;
  continuation: string;
  /** The same prompt as chat turns, ending with the user's (for chat models; the continuation opens the reply). */
  messages?: Message[];
}

export interface LoglikelihoodResult {
  /** Sum of log p(continuation tokens | context), natural log. */
  logprob: number;
  /** Every continuation token is the greedy choice. */
  isGreedy: boolean;
  /** Continuation length in tokens. */
  tokens: number;
}

export interface GenerateUntilRequest {
  context: string;
  /** The same prompt as chat turns, ending with the user's (for chat models). */
  messages?: Message[];
  until: string[];
  maxNewTokens?: number;
  /** Sampling temperature (greedy when absent or 0) and its seed. */
  temperature?: number;
  seed?: number;
}

/** One chat turn's generation settings; `onText` receives the reply as it is decoded. */
export interface ChatTurnOptions {
  maxNewTokens?: number;
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
  stop?: string[];
  onText?: (delta: string) => void;
  /** Keep the conversation's most recent tokens when it is longer than the context window (counted in `truncated`) instead of failing. */
  truncate?: boolean;
}

export interface ChatReply {
  text: string;
  finishReason: 'stop' | 'length';
}

/** The three request types of lm-evaluation-harness; each evaluation method needs one of them. */
export type RequestType = 'loglikelihood' | 'loglikelihood_rolling' | 'generate_until';

/** `true`, or why the backend cannot serve the request type and what to use instead. */
export type Support = true | string;

/**
 * What a backend serves, per request type; `methods` overrides it for one evaluation method (a chat
 * API gives no prompt log-probabilities, yet scores option letters from its next-token top_logprobs).
 */
export type Capabilities = Readonly<Record<RequestType, Support>> & {
  readonly methods?: Readonly<Partial<Record<Method, Support>>>;
};

/** Whether a model can run an evaluation method. */
export function supportOf(c: Capabilities, method: Method): Support {
  return c.methods?.[method] ?? c[requestTypeOf(method)];
}

export type BackendKind = 'local' | 'openai-compatible' | 'anthropic' | 'scripted';

/** What results files record about a model and its settings. Secrets (API keys) never appear here. */
export interface ModelDescription {
  /** Display name: the folder name, or the served model id. */
  model: string;
  /** Weights hash for local models; for remote ones a hash of the endpoint and model id. */
  model_hash: string;
  backend: BackendKind;
  model_type: 'base' | 'chat';
  batch_size?: number;
  prefix_cache?: boolean;
  add_bos?: boolean;
  /** Remote: the API used and the servers' base URLs. */
  endpoint?: 'completions' | 'chat' | 'messages';
  servers?: string[];
  /** Chat mode: the template's name or hash, and the system prompt. */
  chat_template?: string;
  system_prompt?: string;
}

/**
 * The model interface evaluation runs on (lm-evaluation-harness's three request types), in the
 * spirit of the Vercel AI SDK's providers: local models and remote servers are interchangeable,
 * each declares what it can serve, and every call is asynchronous.
 */
export interface LanguageModel {
  readonly modelId: string;
  readonly capabilities: Capabilities;
  describe(): ModelDescription;
  /** Work describe() needs done first where it cannot be done synchronously (a GPU model's weight hash). */
  ready?(): Promise<void>;
  loglikelihood(requests: LoglikelihoodRequest[]): Promise<LoglikelihoodResult[]>;
  loglikelihoodRolling(texts: string[]): Promise<number[]>;
  generateUntil(requests: GenerateUntilRequest[]): Promise<string[]>;
  /** Requests so far whose prompt was cut to fit the context window (where the backend knows). */
  readonly truncated?: number;
  /** The assistant's next turn in a conversation (streamed to onText), where the backend holds conversations. */
  chat?(messages: Message[], opts?: ChatTurnOptions): Promise<ChatReply>;
  /** One vector per text (KATE's nearest examples), where the backend has hidden states. */
  embed?(texts: string[]): Promise<number[][]>;
  /** Prompt tokens served from a prefix cache and computed, so far (where the backend keeps one). */
  readonly prefixStats?: { reusedTokens: number; computedTokens: number };
}

/** The request type an evaluation method sends. */
export function requestTypeOf(method: Method): RequestType {
  return method === 'gen' ? 'generate_until' : method === 'rolling' ? 'loglikelihood_rolling' : 'loglikelihood';
}

/**
 * Throws before any request when the model cannot serve what a method needs, naming the methods the
 * task offers that the model can run (never a silent fallback).
 */
export function assertSupports(lm: LanguageModel, task: string, method: Method, taskMethods: readonly Method[]): void {
  const support = supportOf(lm.capabilities, method);
  if (support === true) return;
  const usable = taskMethods.filter((m) => supportOf(lm.capabilities, m) === true);
  throw new LlmboxError(`${lm.modelId} cannot run ${task} with method ${method}: ${support}`, {
    field: '--method',
    fix: usable.length
      ? `use --method ${usable.join(' or ')} for ${task}`
      : `${task} offers only ${taskMethods.join('/')}: evaluate it on a backend with prompt log-probabilities (a local model, or a server's /v1/completions endpoint)`,
  });
}

/**
 * Encodes a (context, continuation) pair as lm-evaluation-harness does: trailing spaces of the
 * context move to the continuation, the whole string is encoded once, and the continuation is what
 * follows the context's token count. Tokens that merge across the cut therefore count as continuation.
 */
export function encodePair(
  encode: (s: string) => number[],
  context: string,
  continuation: string,
): { context: number[]; continuation: number[] } {
  const [ctx, cont] = splitTrailingSpaces(context, continuation);
  const whole = encode(ctx + cont);
  const ids = encode(ctx);
  return { context: ids, continuation: whole.slice(ids.length) };
}

/** Trailing spaces of the context belong to the continuation (lm-eval), so the cut falls before a word's space. */
export function splitTrailingSpaces(context: string, continuation: string): [string, string] {
  const n = context.length - context.trimEnd().length;
  return n > 0
    ? [context.slice(0, context.length - n), context.slice(context.length - n) + continuation]
    : [context, continuation];
}
