/**
 * Anthropic's Messages API through the official SDK: generation only (the API returns no
 * log-probabilities), so tasks scored by log-likelihood are refused before any request.
 */
import Anthropic from '@anthropic-ai/sdk';
import { LlmboxError } from '../../errors.js';
import type { Message } from '../../data/records.js';
import type {
  ChatReply,
  ChatTurnOptions,
  Capabilities,
  GenerateUntilRequest,
  LanguageModel,
  LoglikelihoodRequest,
  LoglikelihoodResult,
  ModelDescription,
} from '../lm.js';
import { withSystemPrompt } from '../chat.js';
import { sha256 } from '../results.js';
import { envSecret } from '../../util/env.js';
import { defaultRequestCacheDir } from './request-cache.js';
import { call, cutAtStops, Transport, type RemoteOptions, type RequestStats } from './transport.js';
import { DEFAULTS } from '../../util/defaults.js';

export interface AnthropicModelOptions extends RemoteOptions {
  model: string;
  /** Default https://api.anthropic.com (ANTHROPIC_BASE_URL honoured, as the SDK does). */
  baseURL?: string;
  systemPrompt?: string;
}

const NO_LOGPROBS = 'the Anthropic API returns no log-probabilities';

export class AnthropicLM implements LanguageModel {
  readonly modelId: string;
  readonly capabilities: Capabilities = {
    loglikelihood: NO_LOGPROBS,
    loglikelihood_rolling: NO_LOGPROBS,
    generate_until: true,
  };
  private readonly transport: Transport<Anthropic>;

  constructor(private readonly opts: AnthropicModelOptions) {
    this.modelId = `anthropic:${opts.model}`;
    const apiKey = envSecret(opts.apiKeyEnv ?? 'ANTHROPIC_API_KEY', '--api-key-env');
    const baseURL = (opts.baseURL ?? process.env.ANTHROPIC_BASE_URL ?? 'https://api.anthropic.com').replace(/\/+$/, '');
    const client = new Anthropic({
      apiKey,
      baseURL,
      maxRetries: opts.maxRetries ?? DEFAULTS.remote.maxRetries,
      timeout: (opts.timeoutSeconds ?? DEFAULTS.remote.timeoutSeconds) * 1000,
      fetch: (input, init) => this.transport.countingFetch()(input, init),
    });
    this.transport = new Transport(
      [client],
      [baseURL],
      JSON.stringify([baseURL, opts.model, 'messages']),
      opts.concurrency ?? DEFAULTS.remote.concurrency,
      opts.requestCache ?? defaultRequestCacheDir(),
    );
  }

  get stats(): RequestStats {
    return this.transport.stats;
  }

  describe(): ModelDescription {
    return {
      model: this.modelId,
      // The model's identity, not where it runs: shards evaluated on other servers merge, and resume state carries over.
      model_hash: sha256(JSON.stringify(['anthropic', this.opts.model])).slice(0, 16),
      backend: 'anthropic',
      model_type: 'chat',
      endpoint: 'messages',
      servers: this.transport.servers,
      ...(this.opts.systemPrompt !== undefined ? { system_prompt: this.opts.systemPrompt } : {}),
    };
  }

  async loglikelihood(_: LoglikelihoodRequest[]): Promise<LoglikelihoodResult[]> {
    throw new LlmboxError(`loglikelihood: ${NO_LOGPROBS}`, { field: '--method', fix: 'use --method gen' });
  }

  async loglikelihoodRolling(_: string[]): Promise<number[]> {
    throw new LlmboxError(`loglikelihoodRolling: ${NO_LOGPROBS}`, {
      field: '--method',
      fix: 'evaluate perplexity on a local model or a completions server',
    });
  }

  /** The Messages API body for a conversation: system turns to the system field, the rest as user/assistant turns. */
  private body(messages: Message[], maxTokens: number, temperature: number, stop: string[]) {
    const turns = withSystemPrompt(messages, this.opts.systemPrompt);
    const system = turns
      .filter((m) => m.role === 'system')
      .map((m) => m.content)
      .join('\n\n');
    // The API refuses stop sequences that are only whitespace ("\n"); every stop string is applied here anyway.
    const stops = stop.filter((x) => x.trim().length > 0);
    return {
      model: this.opts.model,
      max_tokens: maxTokens,
      temperature: Math.min(1, temperature),
      messages: turns
        .filter((m) => m.role !== 'system')
        .map((m) => ({
          role: m.role === 'assistant' ? ('assistant' as const) : ('user' as const),
          content: m.content,
        })),
      ...(system ? { system } : {}),
      ...(stops.length ? { stop_sequences: stops } : {}),
    };
  }

  async generateUntil(requests: GenerateUntilRequest[]): Promise<string[]> {
    return Promise.all(
      requests.map(
        async (r) =>
          (
            await this.chat(r.messages ?? [{ role: 'user', content: r.context }], {
              maxNewTokens: r.maxNewTokens,
              temperature: r.temperature,
              stop: r.until,
            })
          ).text,
      ),
    );
  }

  /** A conversation's next turn, streamed (server-sent events) when onText is given. */
  async chat(messages: Message[], opts: ChatTurnOptions = {}): Promise<ChatReply> {
    const body = this.body(
      messages,
      opts.maxNewTokens ?? DEFAULTS.eval.maxNewTokens,
      opts.temperature ?? 0,
      opts.stop ?? [],
    );
    let streamed = false;
    const reply = await this.transport.request(['messages', body], async (client, server) => {
      if (!opts.onText) {
        const res = await call(server, () => client.messages.create(body));
        return {
          text: res.content.map((b) => (b.type === 'text' ? b.text : '')).join(''),
          finishReason: res.stop_reason === 'max_tokens' ? ('length' as const) : ('stop' as const),
        };
      }
      streamed = true;
      const stream = await call(server, () => client.messages.create({ ...body, stream: true }));
      let text = '',
        finishReason: ChatReply['finishReason'] = 'stop';
      for await (const event of stream) {
        if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') {
          opts.onText!(event.delta.text);
          text += event.delta.text;
        } else if (event.type === 'message_delta' && event.delta.stop_reason === 'max_tokens') finishReason = 'length';
      }
      return { text, finishReason };
    });
    if (opts.onText && !streamed) opts.onText(reply.text);
    return { ...reply, text: cutAtStops(reply.text, opts.stop ?? []) };
  }
}
