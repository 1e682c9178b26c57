import * as tf from '@tensorflow/tfjs';
import { KVCache, type PastKV } from './kv-cache.js';
import { LlamaModel, leftPad } from './llama.js';
import type { LoadedModel } from './load.js';
import { applyRepetitionPenalty, sampleToken, type SamplingOptions } from './sampling.js';
import { seededRandom } from '../util/random.js';
import { LlmboxError } from '../errors.js';
import { beamSearch } from './beam.js';
import { continuationText } from './continuation.js';
import { topTokens } from './score.js';

export { continuationText };

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens?: number;
  /** Generation ends when one of these strings appears in the text; the text is cut before it. */
  stop?: string[];
  /** Token ids that end generation. Defaults to generation_config.json's eos_token_id. */
  stopIds?: number[];
  /**
   * End when the model emits BOS (default true). Base models trained on `<s> doc <s> doc` streams,
   * such as llama2.c's stories models, end a document by starting the next one.
   */
  stopAtBos?: boolean;
  /** Seed for sampling; a random one is drawn (and reported) when absent. */
  seed?: number;
  /**
   * One seed per prompt: each row samples from its own generator, so a row's text does not depend
   * on which rows share its batch (self-consistency's samples batched over one prompt).
   */
  seeds?: number[];
  /** Add the tokenizer's special tokens (BOS) to text prompts. Default true. */
  addSpecialTokens?: boolean;
  /** Reuse keys and values between steps (default true); off recomputes the whole sequence each step. */
  useCache?: boolean;
  /**
   * An already-encoded prefix shared by every prompt (from a prefix cache): prompts hold only what
   * follows it. Needs the KV cache.
   */
  prefix?: { ids: number[]; kv: PastKV };
  /**
   * Report each generated token's log-probability under the model (before penalties and
   * temperature), with this many most likely alternatives (0: the chosen token only).
   */
  logprobs?: number;
  /** Beam search with this many beams (greedy when 1, the default); lengthPenalty as Hugging Face's. */
  numBeams?: number;
  lengthPenalty?: number;
}

export interface TokenLogprob {
  id: number;
  logprob: number;
  /** The most likely tokens at that step, most likely first. */
  top: [number, number][];
}

export interface GenerateResult {
  promptIds: number[];
  /** Generated ids only, including the stop id when one ended generation. */
  ids: number[];
  text: string;
  finishReason: 'stop' | 'length';
  seed: number;
  /** With `logprobs`: one entry per generated id. */
  logprobs?: TokenLogprob[];
}

/** Prompt tokens decoded before the generated ones, so the first generated word keeps its leading space. */
const CONTEXT_TOKENS = 16;

interface Sequence {
  prompt: number[];
  out: number[];
  done: boolean;
  reason: 'stop' | 'length';
  text?: string;
  logprobs: TokenLogprob[];
}

/** Generates continuations for a batch of prompts (text or ids), left-padding them into one batch. */
export async function generate(
  loaded: LoadedModel,
  prompts: (string | number[])[],
  opts: GenerateOptions = {},
): Promise<GenerateResult[]> {
  if ((opts.numBeams ?? 1) > 1) {
    const out: GenerateResult[] = [];
    for (const p of prompts) out.push(await beamGenerate(loaded, p, opts));
    return out;
  }
  const steps = decoding(loaded, prompts, opts);
  let step = await steps.next();
  while (!step.done) step = await steps.next();
  return step.value;
}

/**
 * Generates for one prompt, handing text to `onText` as it is decoded and yielding to the event loop
 * between tokens (so a server can flush each piece). Text that could still turn into a stop string is
 * held back until it cannot.
 */
export async function generateStream(
  loaded: LoadedModel,
  prompt: string | number[],
  opts: GenerateOptions,
  onText: (delta: string) => void,
): Promise<GenerateResult> {
  const hold = Math.max(0, ...(opts.stop ?? []).map((s) => s.length - 1));
  const steps = decoding(loaded, [prompt], opts);
  let sent = 0;
  for (let step = await steps.next(); ; step = await steps.next()) {
    if (step.done) {
      const text = step.value[0].text;
      if (text.length > sent) onText(text.slice(sent));
      return step.value[0];
    }
    const text = step.value()[0];
    // A replacement character may be half of a multi-byte character that the next token completes.
    const safe = Math.max(sent, text.length - hold - (text.endsWith('\uFFFD') ? 1 : 0));
    if (safe > sent) {
      onText(text.slice(sent, safe));
      sent = safe;
    }
    await new Promise((r) => setImmediate(r));
  }
}

/** The decoding loop: yields after each step (a function giving every row's text so far) and returns the results. */
async function* decoding(
  loaded: LoadedModel,
  prompts: (string | number[])[],
  opts: GenerateOptions,
): AsyncGenerator<() => string[], GenerateResult[]> {
  const { model, tokenizer } = loaded;
  const maxNew = opts.maxNewTokens ?? 64;
  const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 31);
  if (opts.seeds && opts.seeds.length !== prompts.length)
    throw new Error(`generate: ${opts.seeds.length} seeds for ${prompts.length} prompts`);
  const shared = seededRandom(seed);
  const randoms = opts.seeds?.map((s) => seededRandom(s));
  const stopIds = new Set(opts.stopIds ?? loaded.generation.eosTokenIds);
  const bos = loaded.generation.bosTokenId ?? model.config.bosTokenId;
  if ((opts.stopAtBos ?? true) && bos !== undefined && bos !== null) stopIds.add(bos);
  const stops = (opts.stop ?? []).filter((s) => s.length > 0);
  if (stops.length && !tokenizer)
    throw new LlmboxError('stop strings need a tokenizer', {
      file: `${loaded.dir}/tokenizer.json`,
      fix: 'add the tokenizer.json that belongs to the model',
    });

  const rows: Sequence[] = prompts.map((p) => {
    let ids: number[];
    if (typeof p === 'string') {
      if (!tokenizer)
        throw new LlmboxError('text prompts need a tokenizer', {
          file: `${loaded.dir}/tokenizer.json`,
          fix: 'add the tokenizer.json that belongs to the model, or pass token ids',
        });
      ids = tokenizer.encode(p, { addSpecialTokens: opts.addSpecialTokens ?? true });
    } else ids = [...p];
    if (ids.length === 0)
      throw new LlmboxError('empty prompt: with no BOS token there is nothing to condition on', {
        field: '--prompt',
        fix: 'give a non-empty prompt',
      });
    return { prompt: ids, out: [], done: false, reason: 'length', logprobs: [] };
  });
  const B = rows.length;
  const prefix = opts.prefix;
  const prefixLen = prefix?.ids.length ?? 0;
  const promptLen = Math.max(...rows.map((r) => r.prompt.length));
  const maxPos = model.config.maxPositionEmbeddings;
  if (prefixLen + promptLen > maxPos) {
    throw new LlmboxError(`the prompt has ${prefixLen + promptLen} tokens, more than the model's ${maxPos} positions`, {
      field: 'max_position_embeddings',
      fix: 'shorten the prompt (evaluation keeps the last tokens that fit by itself)',
    });
  }
  const steps = Math.max(0, Math.min(maxNew, maxPos - prefixLen - promptLen));
  const pad = loaded.generation.padTokenId ?? 0;
  const useCache = opts.useCache ?? true;
  if (prefix && !useCache) throw new Error('generate: a prefix needs the KV cache (useCache true)');
  const cache = useCache ? new KVCache(model.config, B, promptLen + steps) : undefined;
  const before = prefix?.ids ?? [];

  // The generated text is read after the last prompt tokens only: decoding the whole prompt at every
  // step (to find stop strings) cost more than the step itself with few-shot prompts.
  const textOf = (r: Sequence) =>
    tokenizer ? continuationText(loaded, [...before, ...r.prompt].slice(-CONTEXT_TOKENS), r.out) : '';
  try {
    let { ids, mask } = leftPad(
      rows.map((r) => r.prompt),
      pad,
    );
    for (let step = 0; step < steps && rows.some((r) => !r.done); step++) {
      const logits = tf.tidy(() => {
        const h = model.forward(ids, { attentionMask: mask, cache, past: prefix?.kv });
        const T = h.shape[1];
        return model.logits(
          LlamaModel.pickRows(
            h,
            rows.map((_, b) => b * T + T - 1),
          ),
        );
      });
      // Read asynchronously: a GPU backend (webgpu) cannot read back synchronously in Node.
      const data = (await logits.data()) as Float32Array;
      logits.dispose();
      const V = model.config.vocabSize;
      const next: number[] = [];
      rows.forEach((r, b) => {
        if (r.done) return next.push(pad);
        const row = data.slice(b * V, (b + 1) * V);
        if (row.some((v) => !Number.isFinite(v)))
          throw new Error(
            'the model produced non-finite logits while generating: its weights or activations overflowed',
          );
        const raw = opts.logprobs !== undefined ? row.slice() : undefined;
        if (opts.repetitionPenalty && opts.repetitionPenalty !== 1)
          applyRepetitionPenalty(row, [...before, ...r.prompt, ...r.out], opts.repetitionPenalty);
        const tok = sampleToken(row, opts, randoms?.[b] ?? shared);
        r.out.push(tok);
        next.push(tok);
        if (raw) r.logprobs.push(tokenLogprob(raw, tok, opts.logprobs!));
        if (stopIds.has(tok)) {
          r.done = true;
          r.reason = 'stop';
        } else if (stops.length) {
          const text = textOf(r);
          const at = Math.min(...stops.map((s) => text.indexOf(s)).filter((i) => i >= 0));
          if (Number.isFinite(at)) {
            r.done = true;
            r.reason = 'stop';
            r.text = text.slice(0, at);
          }
        }
      });
      if (cache) {
        ids = next.map((t) => [t]);
        mask = rows.map(() => [1]);
      } else {
        ids = ids.map((row, b) => [...row, next[b]]);
        mask = mask.map((row) => [...row, 1]);
      }
      yield () => rows.map((r) => r.text ?? textOf(r));
    }
  } finally {
    cache?.dispose();
  }
  return rows.map((r) => ({
    promptIds: r.prompt,
    ids: r.out,
    text: r.text ?? textOf(r),
    finishReason: r.reason,
    seed: opts.seeds?.[rows.indexOf(r)] ?? seed,
    ...(opts.logprobs !== undefined ? { logprobs: r.logprobs } : {}),
  }));
}

/** Beam search for one prompt, with generate's stop ids and stop strings. */
async function beamGenerate(
  loaded: LoadedModel,
  prompt: string | number[],
  opts: GenerateOptions,
): Promise<GenerateResult> {
  if ((opts.temperature ?? 0) > 0)
    throw new LlmboxError('beam search is deterministic: it takes no temperature', {
      field: '--num-beams',
      fix: 'use --temperature 0 with --num-beams, or sample with one beam',
    });
  const ids =
    typeof prompt === 'string'
      ? loaded.tokenizer!.encode(prompt, { addSpecialTokens: opts.addSpecialTokens ?? true })
      : prompt;
  const stopIds = new Set(opts.stopIds ?? loaded.generation.eosTokenIds);
  const bos = loaded.generation.bosTokenId ?? loaded.model.config.bosTokenId;
  if ((opts.stopAtBos ?? true) && bos !== undefined && bos !== null) stopIds.add(bos);
  const r = await beamSearch(loaded, ids, {
    numBeams: opts.numBeams!,
    lengthPenalty: opts.lengthPenalty,
    maxNewTokens: opts.maxNewTokens ?? 64,
    stopIds,
  });
  const stops = (opts.stop ?? []).filter((s) => s.length > 0);
  const at = Math.min(...stops.map((s) => r.text.indexOf(s)).filter((i) => i >= 0));
  return Number.isFinite(at) ? { ...r, text: r.text.slice(0, at), finishReason: 'stop' } : r;
}

/** log p(id) under one row of logits, with the k most likely tokens. */
function tokenLogprob(logits: Float32Array, id: number, k: number): TokenLogprob {
  let max = -Infinity;
  for (const x of logits) max = Math.max(max, x);
  let sum = 0;
  for (const x of logits) sum += Math.exp(x - max);
  const logZ = max + Math.log(sum);
  return { id, logprob: logits[id] - logZ, top: topTokens(logits, k).map((v) => [v, logits[v] - logZ]) };
}
