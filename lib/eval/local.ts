import { basename } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { LlmboxError } from '../errors.js';
import { generate, generateStream, type GenerateOptions } from '../models/generate.js';
import { leftPad } from '../models/llama.js';
import type { PastKV } from '../models/kv-cache.js';
import type { LoadedModel } from '../models/load.js';
import { scoreTargets } from '../models/score.js';
import {
  encodePair,
  type Capabilities,
  type ChatReply,
  type ChatTurnOptions,
  type GenerateUntilRequest,
  type LanguageModel,
  type LoglikelihoodRequest,
  type LoglikelihoodResult,
  type ModelDescription,
} from './lm.js';
import { PrefixCache, type PrefixCacheOptions } from './prefix-cache.js';
import { modelHash, modelHashAsync } from './results.js';
import { tokenBatches } from '../util/batches.js';
import type { Message } from '../data/records.js';
import { ChatFormat, requestMessages, type ChatOptions } from './chat.js';
import { DEFAULTS } from '../util/defaults.js';

export interface LocalLMOptions {
  batchSize?: number;
  /**
   * Start every sequence with BOS. Defaults to the tokenizer's add_bos_token (Hugging Face
   * behaviour); lm-evaluation-harness's HF backend adds none unless asked (add_bos_token=True).
   */
  addBos?: boolean;
  /** Padded tokens per forward pass (default 8192): long prompts get smaller batches. */
  maxBatchTokens?: number;
  /** Reuse encoded prefixes across requests (default on); options set its memory budget. */
  prefixCache?: boolean | PrefixCacheOptions;
  /** chat: prompts are the requests' chat turns under a chat template (default: chat when the tokenizer has a template). */
  modelType?: 'base' | 'chat';
  /** Chat mode: the template (default: the tokenizer's, else ChatML) and a system prompt. */
  chat?: ChatOptions;
}

/** A model run in this process: batched, with the radix prefix cache. */
export class LocalLM implements LanguageModel {
  readonly loaded: LoadedModel;
  readonly batchSize: number;
  readonly maxBatchTokens: number;
  private readonly addBos: boolean;
  readonly prefixCache: PrefixCache | undefined;
  private hash: string | undefined;
  readonly capabilities: Capabilities = { loglikelihood: true, loglikelihood_rolling: true, generate_until: true };
  /** Chat mode's template; undefined for base models. */
  readonly chatFormat: ChatFormat | undefined;
  private plainChat: ChatFormat | undefined;
  /** Requests so far whose prompt was cut (oldest tokens first) to fit the context window. */
  truncated = 0;

  constructor(loaded: LoadedModel, opts: LocalLMOptions = {}) {
    if (!loaded.tokenizer)
      throw new LlmboxError("evaluation needs the model's tokenizer", {
        file: `${loaded.dir}/tokenizer.json`,
        fix: 'add the tokenizer.json that belongs to the model',
      });
    this.loaded = loaded;
    this.batchSize = opts.batchSize ?? DEFAULTS.eval.batchSize;
    this.maxBatchTokens = opts.maxBatchTokens ?? DEFAULTS.eval.maxBatchTokens;
    const cfgBos = loaded.tokenizer.config.add_bos_token;
    const chat =
      opts.modelType === 'chat' || (opts.modelType === undefined && loaded.tokenizer.chatTemplate !== undefined);
    this.chatFormat = chat ? new ChatFormat(loaded.tokenizer, opts.chat) : undefined;
    // A template that writes BOS itself wants it whatever add_bos_token says.
    this.addBos = opts.addBos ?? ((this.chatFormat?.writesBos ?? false) || cfgBos === undefined || cfgBos === true);
    const pc = opts.prefixCache ?? true;
    this.prefixCache = pc === false ? undefined : new PrefixCache(loaded.model, pc === true ? {} : pc);
  }

  /** Forgets what was computed from the old weights (cached prefixes, the weights hash) after training. */
  weightsChanged(): void {
    this.prefixCache?.clear();
    this.hash = undefined;
  }

  private queue: Promise<unknown> = Promise.resolve();
  /**
   * One model call at a time, in the order they came: calls read results back asynchronously (a GPU
   * backend cannot read synchronously), and interleaved calls would share the prefix cache mid-use.
   */
  private serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f, f);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private get bos(): number | undefined {
    return this.loaded.tokenizer!.bosTokenId ?? this.loaded.generation.bosTokenId;
  }

  get modelId(): string {
    return this.loaded.name ?? basename(this.loaded.dir);
  }

  async ready(): Promise<void> {
    this.hash ??= await modelHashAsync(this.loaded.model);
  }

  describe(): ModelDescription {
    this.hash ??= modelHash(this.loaded.model);
    const f = this.chatFormat;
    const chat = f
      ? {
          chat_template: f.templateId,
          ...(f.opts.systemPrompt !== undefined ? { system_prompt: f.opts.systemPrompt } : {}),
        }
      : {};
    return {
      model: this.modelId,
      model_hash: this.hash,
      backend: 'local',
      model_type: f ? 'chat' : 'base',
      ...chat,
      batch_size: this.batchSize,
      prefix_cache: this.prefixCache !== undefined,
      add_bos: this.addBos,
    };
  }

  /**
   * The assistant's next turn under the chat template (the model's, else ChatML, also for base
   * models), streamed to onText; ends at EOS, the template's end marker or a stop string.
   */
  chat(messages: Message[], opts: ChatTurnOptions = {}): Promise<ChatReply> {
    return this.serial(async () => {
      const fmt = this.chatFormat ?? (this.plainChat ??= new ChatFormat(this.loaded.tokenizer!));
      const p = fmt.render(messages);
      let ids = [...this.prefix(), ...this.encode(p.text)];
      const maxNew = opts.maxNewTokens ?? DEFAULTS.eval.maxNewTokens;
      const keep = Math.max(1, this.loaded.model.config.maxPositionEmbeddings - maxNew);
      if (opts.truncate && ids.length > keep) {
        ids = ids.slice(-keep);
        this.truncated++;
      }
      const decode: GenerateOptions = {
        maxNewTokens: maxNew,
        temperature: opts.temperature,
        topP: opts.topP,
        topK: opts.topK,
        seed: opts.seed ?? 0,
        stop: [...(opts.stop ?? []), ...p.stop],
      };
      const r = opts.onText
        ? await generateStream(this.loaded, ids, decode, opts.onText)
        : (await generate(this.loaded, [ids], decode))[0];
      return { text: r.text, finishReason: r.finishReason };
    });
  }

  /** Token ids without special tokens. */
  encode(text: string): number[] {
    return this.loaded.tokenizer!.encode(text, { addSpecialTokens: false });
  }

  /** The token that sequences without context are predicted from: BOS, else EOS (as lm-eval). */
  private startToken(caller: string): number {
    const start = this.bos ?? this.loaded.generation.eosTokenIds[0];
    if (start === undefined)
      throw new LlmboxError(`${caller}: the model has no BOS or EOS token to predict the first token from`, {
        file: `${this.loaded.dir}/config.json`,
        field: 'bos_token_id',
        fix: 'set bos_token_id (or eos_token_id) in config.json or generation_config.json',
      });
    return start;
  }

  private prefix(): number[] {
    const bos = this.bos;
    return this.addBos && bos !== undefined ? [bos] : [];
  }

  /**
   * Scores each continuation. With the prefix cache, requests are grouped by context and ordered
   * so that shared prefixes are adjacent; each context is encoded once (minus its last token, which
   * is fed with the continuation so its prediction is scored) and its options are scored on top of
   * it in one batch. Without it, whole sequences are batched with left padding, longest first.
   */
  loglikelihood(requests: LoglikelihoodRequest[]): Promise<LoglikelihoodResult[]> {
    return this.serial(async () => {
      // Chat models read the option as the start of the assistant's reply, after the template's opening.
      if (this.chatFormat)
        requests = requests.map((r) => ({
          context: this.chatFormat!.render(requestMessages(r.messages, 'loglikelihood')).text,
          continuation: r.continuation.trimStart(),
        }));
      const prefix = this.prefix();
      const maxLen = this.loaded.model.config.maxPositionEmbeddings;
      const encoded = requests.map((r) => {
        const pair = encodePair((s) => this.encode(s), r.context, r.continuation);
        const continuation = pair.continuation;
        let context = [...prefix, ...pair.context];
        if (context.length === 0) context = [this.startToken('loglikelihood')];
        if (continuation.length === 0)
          throw new LlmboxError(`loglikelihood: continuation ${JSON.stringify(r.continuation)} encodes to no tokens`, {
            field: '--dataset',
            fix: 'an option must hold text',
          });
        return { context, continuation };
      });
      const results = new Array<LoglikelihoodResult>(requests.length);
      let plain: number[] = [];
      const groups = new Map<string, number[]>();
      encoded.forEach((e, i) => {
        // Pairs longer than the window lose their oldest tokens, so their prefixes are not shared.
        if (!this.prefixCache || e.context.length + e.continuation.length > maxLen + 1) return plain.push(i);
        const key = e.context.join(',');
        const g = groups.get(key);
        if (g) g.push(i);
        else groups.set(key, [i]);
      });
      const ordered = [...groups.values()].sort((a, b) => compareIds(encoded[a[0]].context, encoded[b[0]].context));
      for (const group of ordered) {
        const context = encoded[group[0]].context;
        const held = this.prefixCache!.acquire(context.slice(0, -1));
        try {
          const last = context[context.length - 1];
          await this.scoreRows(
            group,
            results,
            (i) => ({ input: [last, ...encoded[i].continuation.slice(0, -1)], targets: encoded[i].continuation }),
            held.past,
          );
        } finally {
          held.release();
        }
      }
      this.truncated += encoded.filter((e) => e.context.length + e.continuation.length > maxLen + 1).length;
      plain.sort(
        (a, b) =>
          encoded[b].context.length +
          encoded[b].continuation.length -
          encoded[a].context.length -
          encoded[a].continuation.length,
      );
      // An option longer than the window has targets no single window can predict: it is read in windows.
      const long = plain.filter((i) => encoded[i].continuation.length > maxLen);
      for (const i of long) {
        const { context, continuation } = encoded[i];
        results[i] = await this.scoreWindows([...context, ...continuation], context.length);
      }
      plain = plain.filter((i) => encoded[i].continuation.length <= maxLen);
      await this.scoreRows(plain, results, (i) => {
        // Keep the most recent tokens when the pair is longer than the model's context window.
        const ids = [...encoded[i].context, ...encoded[i].continuation].slice(-(maxLen + 1));
        return { input: ids.slice(0, -1), targets: encoded[i].continuation };
      });
      return results;
    });
  }

  private batches<T>(items: T[], tokens: (item: T) => number): T[][] {
    return tokenBatches(items, tokens, this.batchSize, this.maxBatchTokens);
  }

  /** Scores requests in batches: each row's targets are the last predictions of its input. */
  private async scoreRows(
    indices: number[],
    results: LoglikelihoodResult[],
    row: (i: number) => { input: number[]; targets: number[] },
    past?: PastKV,
  ): Promise<void> {
    const rows = indices.map((i) => ({ i, ...row(i) }));
    for (const batch of this.batches(rows, (r) => r.input.length)) {
      const { ids, mask } = leftPad(batch.map((b) => b.input));
      const T = ids[0].length;
      const hidden = this.loaded.model.forward(ids, { attentionMask: mask, past });
      try {
        for (const [b, { i, targets }] of batch.entries()) {
          const n = targets.length;
          const scores = await scoreTargets(
            this.loaded.model,
            hidden,
            b,
            targets.map((target, j) => ({ row: T - n + j, target })),
          );
          results[i] = {
            logprob: scores.reduce((a, s) => a + s.logprob, 0),
            isGreedy: scores.every((s) => s.isArgmax),
            tokens: n,
          };
        }
      } finally {
        hidden.dispose();
      }
    }
  }

  /**
   * Mean-pooled final hidden states (after the last norm) of each text, without BOS, padding left
   * out of the mean: the model's own sentence embedding for KATE. Texts longer than the window keep
   * their first tokens.
   */
  embed(texts: string[]): Promise<number[][]> {
    return this.serial(async () => {
      const maxLen = this.loaded.model.config.maxPositionEmbeddings;
      const rows = texts.map((t, i) => {
        const ids = this.encode(t).slice(0, maxLen);
        return { i, ids: ids.length ? ids : [this.startToken('loglikelihood')] };
      });
      const out = new Array<number[]>(texts.length);
      for (const batch of this.batches(rows, (r) => r.ids.length)) {
        const { ids, mask } = leftPad(batch.map((b) => b.ids));
        const hidden = this.loaded.model.forward(ids, { attentionMask: mask });
        const pooled = tf.tidy(() => {
          const m = tf.tensor3d(mask.flat(), [ids.length, ids[0].length, 1]);
          return tf.div(tf.sum(tf.mul(hidden, m), 1), tf.sum(m, 1));
        });
        hidden.dispose();
        const vectors = (await pooled.array()) as number[][];
        pooled.dispose();
        batch.forEach((b, j) => (out[b.i] = vectors[j]));
      }
      return out;
    });
  }

  get prefixStats(): { reusedTokens: number; computedTokens: number } | undefined {
    return this.prefixCache?.stats;
  }

  /** Log-likelihood of whole texts (for perplexity), in windows of the model's context length. */
  loglikelihoodRolling(texts: string[]): Promise<number[]> {
    return this.serial(async () => {
      const out: number[] = [];
      for (const text of texts) {
        const ids = [this.startToken('loglikelihoodRolling'), ...this.encode(text)];
        out.push((await this.scoreWindows(ids, 1)).logprob);
      }
      return out;
    });
  }

  /**
   * The log-likelihood of ids[from..] given what precedes it, in lm-evaluation-harness's rolling
   * windows: each window predicts up to the model's context length of new tokens, with as much of the
   * preceding sequence as fits as context.
   */
  private async scoreWindows(ids: number[], from: number): Promise<LoglikelihoodResult> {
    const maxLen = this.loaded.model.config.maxPositionEmbeddings;
    let logprob = 0,
      isGreedy = true;
    for (let at = from; at < ids.length; at += maxLen) {
      const n = Math.min(maxLen, ids.length - at);
      const hidden = this.loaded.model.forward([ids.slice(Math.max(0, at + n - 1 - maxLen), at + n - 1)]);
      try {
        const T = hidden.shape[1];
        const picks = ids.slice(at, at + n).map((target, j) => ({ row: T - n + j, target }));
        const scores = await scoreTargets(this.loaded.model, hidden, 0, picks);
        logprob += scores.reduce((a, s) => a + s.logprob, 0);
        isGreedy &&= scores.every((s) => s.isArgmax);
      } finally {
        hidden.dispose();
      }
    }
    return { logprob, isGreedy, tokens: ids.length - from };
  }

  /**
   * Generates for each request; the prompt keeps its most recent tokens when it would leave no room
   * for maxNewTokens (as lm-evaluation-harness). Greedy requests with the same stop strings and
   * length are decoded batchSize at a time (decoding is memory-bound: a batch reads the weights once
   * per step); sampled ones one by one, so each keeps its own seed. With the prefix cache, the
   * prompts' longest common prefix comes from the tree (a few-shot prefix is encoded once per task)
   * and only the rest is encoded.
   */
  generateUntil(requests: GenerateUntilRequest[], opts: GenerateOptions = {}): Promise<string[]> {
    return this.serial(async () => {
      if (this.chatFormat) {
        requests = requests.map((r) => {
          const p = this.chatFormat!.render(requestMessages(r.messages, 'generateUntil'));
          return { ...r, context: p.text, until: [...r.until, ...p.stop.filter((s) => !r.until.includes(s))] };
        });
      }
      const maxLen = this.loaded.model.config.maxPositionEmbeddings;
      const out = new Array<string>(requests.length);
      const lengthOf = (r: GenerateUntilRequest) => r.maxNewTokens ?? opts.maxNewTokens ?? DEFAULTS.eval.maxNewTokens;
      const encoded = requests.map((r) => {
        const ids = [...this.prefix(), ...this.encode(r.context)];
        // The prompt keeps room for the whole generation, but never less than half the window: a
        // generation budget as long as the window (IFEval's 1280 tokens on a 512-token model) would
        // otherwise leave a prompt of one token. Generation then stops at the window's end.
        const keep = Math.max(1, maxLen - lengthOf(r), Math.floor(maxLen / 2));
        if (ids.length > keep) this.truncated++;
        return ids.slice(-keep);
      });
      const groups: number[][] = [];
      const same = new Map<string, number[]>();
      // Sampled requests batch with the other samples of the same prompt (self-consistency's N rows
      // over one cached prefix), each row with its own seed; greedy ones with any of the same settings.
      requests.forEach((r, i) => {
        const temperature = r.temperature ?? opts.temperature ?? 0;
        const key = JSON.stringify([r.until, lengthOf(r), temperature, temperature > 0 ? encoded[i] : null]);
        same.set(key, [...(same.get(key) ?? []), i]);
      });
      for (const unsorted of same.values()) {
        // Similar lengths share a batch, so little of it is padding.
        const members = [...unsorted].sort((a, b) => encoded[a].length - encoded[b].length || a - b);
        // With the cache only what follows the members' common prefix is encoded per batch.
        const shared = this.prefixCache
          ? commonPrefixLength(
              members.map((i) => encoded[i]),
              Math.min(...members.map((i) => encoded[i].length)) - 1,
            )
          : 0;
        groups.push(...this.batches(members, (i) => encoded[i].length - shared + lengthOf(requests[i])));
      }
      for (const group of groups) {
        const r = requests[group[0]];
        const maxNewTokens = lengthOf(r);
        const prompts = group.map((i) => encoded[i]);
        const temperature = r.temperature ?? opts.temperature;
        const decode = {
          ...opts,
          maxNewTokens,
          stop: r.until,
          temperature,
          seed: r.seed ?? opts.seed ?? 0,
          ...((temperature ?? 0) > 0 ? { seeds: group.map((i) => requests[i].seed ?? opts.seed ?? 0) } : {}),
        };
        let texts: string[];
        if (!this.prefixCache) {
          texts = (await generate(this.loaded, prompts, decode)).map((g) => g.text);
        } else {
          // Every row keeps at least its last token to feed.
          const shared = commonPrefixLength(prompts, Math.min(...prompts.map((p) => p.length)) - 1);
          const head = prompts[0].slice(0, shared);
          const held = this.prefixCache.acquire(head);
          try {
            const kv = held.past;
            const gens = await generate(
              this.loaded,
              prompts.map((p) => p.slice(shared)),
              { ...decode, prefix: kv ? { ids: head, kv } : undefined },
            );
            texts = gens.map((g) => g.text);
          } finally {
            held.release();
          }
        }
        group.forEach((i, j) => (out[i] = texts[j]));
      }
      return out;
    });
  }
}

/** Length of the longest common prefix of token sequences, at most `cap`. */
function commonPrefixLength(seqs: number[][], cap: number): number {
  let n = 0;
  while (n < cap && seqs.every((s) => s[n] === seqs[0][n])) n++;
  return n;
}

/** Lexicographic order of token sequences: requests sharing a prefix end up next to each other. */
function compareIds(a: number[], b: number[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}
