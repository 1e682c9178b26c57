/**
 * OpenAI-compatible servers (OpenAI, vLLM, SGLang, llama.cpp server, Ollama, LM Studio, llmbox
 * serve) through the official SDK. Log-likelihoods come from /v1/completions with echo: the prompt
 * is context + continuation, and the continuation's tokens are those whose text offset falls at or
 * after the context's end (as LLMBox and lm-evaluation-harness do).
 */
import OpenAI from 'openai';
import { LlmboxError } from '../../errors.js';
import { sha256 } from '../results.js';
import { envSecret } from '../../util/env.js';
import type { Message } from '../../data/records.js';
import {
  splitTrailingSpaces,
  type Capabilities,
  type ChatReply,
  type ChatTurnOptions,
  type GenerateUntilRequest,
  type LanguageModel,
  type LoglikelihoodRequest,
  type LoglikelihoodResult,
  type ModelDescription,
} from '../lm.js';
import { withSystemPrompt } from '../chat.js';
import { defaultRequestCacheDir } from './request-cache.js';
import { call, cutAtStops, Transport, type RemoteOptions, type RequestStats } from './transport.js';
import { DEFAULTS } from '../../util/defaults.js';

export type Endpoint = 'completions' | 'chat';

export interface OpenAIModelOptions extends RemoteOptions {
  /** Base URLs ending in /v1; several spread the requests (least outstanding first). */
  servers: string[];
  model: string;
  endpoint?: Endpoint;
  /** Chat endpoint: a system message before each prompt. */
  systemPrompt?: string;
}

/** The part of a completion choice that scoring and generation read (what the cache keeps). */
interface Choice {
  text: string;
  logprobs: { token_logprobs: (number | null)[]; text_offset: number[]; top: (number | null)[] } | null;
}

const NO_PROMPT_LOGPROBS = 'chat endpoints return no prompt log-probabilities';

export class OpenAICompatibleLM implements LanguageModel {
  readonly modelId: string;
  readonly capabilities: Capabilities;
  private readonly transport: Transport<OpenAI>;
  private readonly endpoint: Endpoint;
  /** Tokens generated alongside an echoed prompt: 0 where the server allows it, else 1 (vLLM needs at least one). */
  private echoTokens: 0 | 1 = 0;
  /** Whether echoTokens has been learned from the server (by one request sent alone). */
  private echoKnown = false;
  private maxModelLen: number | null | undefined;

  constructor(private readonly opts: OpenAIModelOptions) {
    this.endpoint = opts.endpoint ?? 'completions';
    this.modelId = opts.model;
    const chat = this.endpoint === 'chat';
    this.capabilities = {
      loglikelihood: chat ? `${NO_PROMPT_LOGPROBS}` : true,
      loglikelihood_rolling: chat ? `${NO_PROMPT_LOGPROBS}` : true,
      generate_until: true,
      // Option letters are scored from the reply's first-token top_logprobs.
      ...(chat ? { methods: { prob: true } } : {}),
    };
    // A key is sent only where asked for: a local server never sees the user's OpenAI key by accident.
    const apiKey = opts.apiKeyEnv ? envSecret(opts.apiKeyEnv, '--api-key-env') : '';
    const servers = opts.servers.map((s) => s.replace(/\/+$/, ''));
    const clients = servers.map(
      (baseURL) =>
        new OpenAI({
          baseURL,
          // Local servers need no key; the SDK insists on a string.
          apiKey: apiKey || 'EMPTY',
          maxRetries: opts.maxRetries ?? DEFAULTS.remote.maxRetries,
          timeout: (opts.timeoutSeconds ?? DEFAULTS.remote.timeoutSeconds) * 1000,
          fetch: (input, init) => this.transport.countingFetch()(input, init),
        }),
    );
    this.transport = new Transport(
      clients,
      servers,
      JSON.stringify([servers, opts.model, this.endpoint]),
      opts.concurrency ?? DEFAULTS.remote.concurrency,
      opts.requestCache ?? defaultRequestCacheDir(),
    );
  }

  get stats(): RequestStats {
    return this.transport.stats;
  }

  describe(): ModelDescription {
    return {
      model: this.opts.model,
      // The model's identity, not where it runs: shards evaluated on other servers merge, and resume state carries over.
      model_hash: sha256(JSON.stringify(['openai-compatible', this.opts.model])).slice(0, 16),
      backend: 'openai-compatible',
      model_type: this.endpoint === 'chat' ? 'chat' : 'base',
      endpoint: this.endpoint,
      servers: this.transport.servers,
      ...(this.opts.systemPrompt !== undefined ? { system_prompt: this.opts.systemPrompt } : {}),
    };
  }

  /** Sends a completions request (or answers it from the cache), keeping what scoring and generation read. */
  private complete(body: Record<string, unknown>): Promise<Choice> {
    return this.transport.request(['completions', body], async (client, server) => {
      const r = await call(server, () =>
        client.completions.create(body as unknown as OpenAI.CompletionCreateParamsNonStreaming),
      );
      const c = r.choices?.[0];
      if (!c) throw new Error(`server ${server}: a completion without choices`);
      const lp = c.logprobs;
      return {
        text: c.text,
        logprobs:
          lp?.token_logprobs && lp.text_offset
            ? {
                token_logprobs: lp.token_logprobs,
                text_offset: lp.text_offset,
                top: (lp.top_logprobs ?? []).map((t) => (t ? Math.max(...Object.values(t)) : null)),
              }
            : null,
      };
    });
  }

  /** The prompt echoed with its log-probabilities; the first call learns whether the server takes max_tokens 0. */
  private async echo(prompt: string): Promise<Choice> {
    const body = (n: number) => ({
      model: this.opts.model,
      prompt,
      max_tokens: n,
      echo: true,
      logprobs: 1,
      temperature: 0,
    });
    if (this.echoKnown) return this.complete(body(this.echoTokens));
    try {
      const choice = await this.complete(body(0));
      this.echoKnown = true;
      return choice;
    } catch (e) {
      if (!(e instanceof LlmboxError) || !/max_tokens/.test(e.message)) throw e;
      this.echoTokens = 1;
      this.echoKnown = true;
      return this.complete(body(1));
    }
  }

  /** Runs f for every index; until the echo setting is learned, the first goes alone (a refused probe must not fail requests queued behind it). */
  private async each(indices: number[], f: (i: number) => Promise<void>): Promise<void> {
    if (!this.echoKnown && indices.length) {
      await f(indices[0]);
      indices = indices.slice(1);
    }
    await Promise.all(indices.map(f));
  }

  async loglikelihood(requests: LoglikelihoodRequest[]): Promise<LoglikelihoodResult[]> {
    if (this.endpoint === 'chat') return this.optionLogprobs(requests);
    // Requests sharing a context go out together, so the server's prefix cache sees them back to back.
    const order = requests
      .map((_, i) => i)
      .sort((a, b) =>
        requests[a].context < requests[b].context ? -1 : requests[a].context > requests[b].context ? 1 : a - b,
      );
    const out = new Array<LoglikelihoodResult>(requests.length);
    await this.each(order, async (i) => {
      const [context, continuation] = splitTrailingSpaces(requests[i].context, requests[i].continuation);
      out[i] = scoreSpan(
        await this.echo(context + continuation),
        context,
        context.length + continuation.length,
        this.where(),
      );
    });
    return out;
  }

  /**
   * Chat endpoints: each option (a letter, method prob) is a candidate first token of the reply; its
   * log-probability is read from the reply's top_logprobs (the spellings with and without a leading
   * space together). An option not among the top 20 is an error, not a guess.
   */
  private async optionLogprobs(requests: LoglikelihoodRequest[]): Promise<LoglikelihoodResult[]> {
    const groups = new Map<string, number[]>();
    requests.forEach((r, i) => {
      const key = JSON.stringify(r.messages ?? r.context);
      groups.set(key, [...(groups.get(key) ?? []), i]);
    });
    const out = new Array<LoglikelihoodResult>(requests.length);
    await Promise.all(
      [...groups.values()].map(async (members) => {
        const r = requests[members[0]];
        const body = {
          model: this.opts.model,
          messages: withSystemPrompt(r.messages ?? [{ role: 'user', content: r.context }], this.opts.systemPrompt),
          max_tokens: 1,
          temperature: 0,
          logprobs: true,
          top_logprobs: 20,
        };
        const top = await this.transport.request(['chat', body], async (client, server) => {
          const res = await call(server, () =>
            client.chat.completions.create(body as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming),
          );
          const first = res.choices?.[0]?.logprobs?.content?.[0]?.top_logprobs;
          if (!first?.length)
            throw new LlmboxError(`server ${server} returned no top_logprobs`, {
              field: '--endpoint',
              fix: 'use a server that returns logprobs on chat completions, or --endpoint completions',
            });
          return first.map((t) => ({ token: t.token, logprob: t.logprob }));
        });
        for (const i of members) {
          const option = requests[i].continuation.trim();
          const hits = top.filter((t) => t.token.trim() === option).map((t) => t.logprob);
          if (!hits.length) {
            throw new LlmboxError(
              `option ${JSON.stringify(option)} is not among the top ${top.length} first tokens of ${this.opts.model}'s reply`,
              {
                field: '--method',
                fix: 'score options on a completions endpoint (--endpoint completions), or use --method gen',
              },
            );
          }
          const max = Math.max(...hits);
          const logprob = max + Math.log(hits.reduce((a, x) => a + Math.exp(x - max), 0));
          out[i] = { logprob, isGreedy: top[0].token.trim() === option, tokens: 1 };
        }
      }),
    );
    return out;
  }

  async loglikelihoodRolling(texts: string[]): Promise<number[]> {
    this.assertCompletions('loglikelihoodRolling');
    const out = new Array<number>(texts.length);
    await this.each(
      texts.map((_, i) => i),
      async (i) => {
        out[i] = scoreSpan(await this.echo(texts[i]), '', texts[i].length, this.where()).logprob;
      },
    );
    return out;
  }

  async generateUntil(requests: GenerateUntilRequest[]): Promise<string[]> {
    const maxModelLen = await this.contextWindow();
    return Promise.all(
      requests.map(async (r) => {
        const maxTokens = r.maxNewTokens ?? DEFAULTS.eval.maxNewTokens;
        // Servers that report their window (vLLM, llmbox serve) keep the prompt's last tokens, as local generation does.
        const truncate = maxModelLen ? { truncate_prompt_tokens: Math.max(1, maxModelLen - maxTokens) } : {};
        const sampling = { temperature: r.temperature ?? 0, ...(r.seed !== undefined ? { seed: r.seed } : {}) };
        // OpenAI takes at most 4 stop strings; every one is applied here as well.
        const stop = r.until.filter((s) => s.length > 0).slice(0, 4);
        let text: string;
        if (this.endpoint === 'chat') {
          // Few-shot examples travel as earlier turns (lm-eval's fewshot_as_multiturn).
          const messages = withSystemPrompt(
            r.messages ?? [{ role: 'user', content: r.context }],
            this.opts.systemPrompt,
          );
          text = (
            await this.chatReply(
              {
                model: this.opts.model,
                messages,
                max_tokens: maxTokens,
                ...sampling,
                ...(stop.length ? { stop } : {}),
                ...truncate,
              },
              r.until,
            )
          ).text;
        } else {
          text = (
            await this.complete({
              model: this.opts.model,
              prompt: r.context,
              max_tokens: maxTokens,
              ...sampling,
              ...(stop.length ? { stop } : {}),
              ...truncate,
            })
          ).text;
        }
        return cutAtStops(text, r.until);
      }),
    );
  }

  /** A conversation's next turn through /v1/chat/completions (the server's template), streamed when onText is given. */
  async chat(messages: Message[], opts: ChatTurnOptions = {}): Promise<ChatReply> {
    const body = {
      model: this.opts.model,
      messages: withSystemPrompt(messages, this.opts.systemPrompt),
      max_tokens: opts.maxNewTokens ?? DEFAULTS.eval.maxNewTokens,
      temperature: opts.temperature ?? 0,
      ...(opts.topP !== undefined ? { top_p: opts.topP } : {}),
      ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
      ...(opts.stop?.length ? { stop: opts.stop.slice(0, 4) } : {}),
    };
    return this.chatReply(body, opts.stop ?? [], opts.onText);
  }

  /** One chat completion (or its cached reply), streamed to onText when given; the text is cut at the stop strings. */
  private async chatReply(
    body: Record<string, unknown>,
    stops: string[],
    onText?: (delta: string) => void,
  ): Promise<ChatReply> {
    let streamed = false;
    const reply = await this.transport.request(['chat', body], async (client, server) => {
      if (!onText) {
        const r = await call(server, () =>
          client.chat.completions.create(body as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming),
        );
        return {
          text: r.choices?.[0]?.message?.content ?? '',
          finishReason: r.choices?.[0]?.finish_reason === 'length' ? ('length' as const) : ('stop' as const),
        };
      }
      streamed = true;
      const stream = await call(server, () =>
        client.chat.completions.create({
          ...body,
          stream: true,
        } as unknown as OpenAI.ChatCompletionCreateParamsStreaming),
      );
      let text = '',
        finishReason: ChatReply['finishReason'] = 'stop';
      for await (const chunk of stream) {
        const delta = chunk.choices?.[0]?.delta?.content ?? '';
        if (delta) onText(delta);
        text += delta;
        if (chunk.choices?.[0]?.finish_reason === 'length') finishReason = 'length';
      }
      return { text, finishReason };
    });
    if (onText && !streamed) onText(reply.text);
    return { ...reply, text: cutAtStops(reply.text, stops) };
  }

  /** The context window a server reports in /v1/models (vLLM's and llmbox's max_model_len), or null. */
  private async contextWindow(): Promise<number | null> {
    if (this.maxModelLen !== undefined) return this.maxModelLen;
    const card = await this.transport.request(['models', this.opts.model], async (client, server) => {
      const list = await call(server, () => client.models.list());
      const found = list.data.find((m) => m.id === this.opts.model) as
        (OpenAI.Model & { max_model_len?: number }) | undefined;
      if (!found)
        throw new LlmboxError(`server ${server} does not serve model ${this.opts.model}`, {
          field: '--model',
          fix: `use one of: ${list.data.map((m) => m.id).join(', ')}`,
        });
      return { maxModelLen: typeof found.max_model_len === 'number' ? found.max_model_len : null };
    });
    this.maxModelLen = card.maxModelLen;
    return this.maxModelLen;
  }

  private assertCompletions(what: string): void {
    if (this.endpoint === 'chat')
      throw new LlmboxError(`${what}: ${NO_PROMPT_LOGPROBS}`, {
        field: '--endpoint',
        fix: 'use --endpoint completions, or --method gen',
      });
  }

  private where(): string {
    return this.transport.servers.join(', ');
  }
}

/**
 * Sums the log-probabilities of the echoed tokens that start in [from, end) of the text: the
 * continuation after `context`. Tokens the server generated beyond the prompt start at or after end.
 */
export function scoreSpan(choice: Choice, context: string, end: number, server: string): LoglikelihoodResult {
  const lp = choice.logprobs;
  if (!lp)
    throw new LlmboxError(`server ${server} returned no prompt log-probabilities`, {
      field: '--model',
      fix: 'the server must support echo with logprobs on /v1/completions (vLLM, SGLang, llama.cpp server and llmbox serve do); else use --method gen',
    });
  if (!choice.text.startsWith(context)) {
    throw new LlmboxError(`server ${server} echoed a prompt that differs from the one sent`, {
      field: '--model',
      fix: 'the server must echo the prompt unchanged (echo: true)',
    });
  }
  let logprob = 0,
    tokens = 0,
    greedy = true;
  lp.text_offset.forEach((offset, i) => {
    if (offset < context.length || offset >= end) return;
    const x = lp.token_logprobs[i];
    // A zero-width first token (BOS) has no log-probability and is not part of the text.
    if (x === null && i === 0 && lp.text_offset[1] === offset) return;
    if (x === null) {
      throw new LlmboxError(`server ${server} gave no log-probability for a continuation token (position ${i})`, {
        field: '--model',
        fix: 'the first prompt token has none: the server must start prompts with BOS, or the context must be non-empty',
      });
    }
    logprob += x;
    tokens++;
    const top = lp.top[i];
    greedy &&= top !== null && x >= top;
  });
  if (tokens === 0)
    throw new LlmboxError(
      `the continuation after ${JSON.stringify(context.slice(-30))} has no tokens of its own on server ${server}`,
      { field: '--dataset' },
    );
  return { logprob, isGreedy: greedy, tokens };
}
