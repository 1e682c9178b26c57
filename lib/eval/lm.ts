import { generate, type GenerateOptions } from '../models/generate.js';
import { leftPad } from '../models/llama.js';
import type { LoadedModel } from '../models/load.js';
import { scoreTargets } from '../models/score.js';

export interface LoglikelihoodRequest {
  context: string;
  continuation: string;
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
  until: string[];
  maxNewTokens?: number;
}

/**
 * The small model interface evaluation runs on (lm-evaluation-harness's shape), so that local
 * models and remote servers are interchangeable.
 */
export interface LanguageModel {
  loglikelihood(requests: LoglikelihoodRequest[]): LoglikelihoodResult[];
  loglikelihoodRolling(texts: string[]): number[];
  generateUntil(requests: GenerateUntilRequest[]): string[];
}

export interface LocalLMOptions {
  batchSize?: number;
  /**
   * Start every sequence with BOS. Defaults to the tokenizer's add_bos_token (Hugging Face
   * behaviour); lm-evaluation-harness's HF backend adds none unless asked (add_bos_token=True).
   */
  addBos?: boolean;
}

/**
 * Encodes a (context, continuation) pair as lm-evaluation-harness does: trailing spaces of the
 * context move to the continuation, the whole string is encoded once, and the continuation is what
 * follows the context's token count. Tokens that merge across the cut therefore count as continuation.
 */
export function encodePair(encode: (s: string) => number[], context: string, continuation: string): { context: number[]; continuation: number[] } {
  const nSpaces = context.length - context.trimEnd().length;
  if (nSpaces > 0) {
    continuation = context.slice(context.length - nSpaces) + continuation;
    context = context.slice(0, context.length - nSpaces);
  }
  const whole = encode(context + continuation);
  const ctx = encode(context);
  return { context: ctx, continuation: whole.slice(ctx.length) };
}

export class LocalLM implements LanguageModel {
  readonly lm: LoadedModel;
  readonly batchSize: number;
  private readonly addBos: boolean;

  constructor(lm: LoadedModel, opts: LocalLMOptions = {}) {
    if (!lm.tokenizer) throw new Error('LocalLM needs a tokenizer (tokenizer.json in the model folder)');
    this.lm = lm;
    this.batchSize = opts.batchSize ?? 8;
    const cfgBos = lm.tokenizer.config.add_bos_token;
    this.addBos = opts.addBos ?? (cfgBos === undefined ? true : cfgBos === true);
  }

  private get bos(): number | undefined {
    return this.lm.tokenizer!.bosTokenId ?? this.lm.generation.bosTokenId;
  }

  /** Token ids without special tokens. */
  encode(text: string): number[] {
    return this.lm.tokenizer!.encode(text, { addSpecialTokens: false });
  }

  /** The token that sequences without context are predicted from: BOS, else EOS (as lm-eval). */
  private startToken(caller: string): number {
    const start = this.bos ?? this.lm.generation.eosTokenIds[0];
    if (start === undefined) throw new Error(`${caller}: no BOS/EOS token to predict the first token from`);
    return start;
  }

  private prefix(): number[] {
    const bos = this.bos;
    return this.addBos && bos !== undefined ? [bos] : [];
  }

  /** Scores each continuation; requests are batched with left padding, longest first. */
  loglikelihood(requests: LoglikelihoodRequest[]): LoglikelihoodResult[] {
    const prefix = this.prefix();
    const maxLen = this.lm.model.config.maxPositionEmbeddings;
    const encoded = requests.map((r) => {
      let { context, continuation } = encodePair((s) => this.encode(s), r.context, r.continuation);
      context = [...prefix, ...context];
      if (context.length === 0) context = [this.startToken('loglikelihood')];
      if (continuation.length === 0) throw new Error(`loglikelihood: continuation ${JSON.stringify(r.continuation)} encodes to no tokens`);
      // Keep the most recent tokens when the pair is longer than the model's context window.
      const ids = [...context, ...continuation].slice(-(maxLen + 1));
      return { ids, nCont: continuation.length };
    });
    const order = encoded.map((_, i) => i).sort((a, b) => encoded[b].ids.length - encoded[a].ids.length);
    const results = new Array<LoglikelihoodResult>(requests.length);
    for (let start = 0; start < order.length; start += this.batchSize) {
      const batch = order.slice(start, start + this.batchSize);
      const inputs = batch.map((i) => encoded[i].ids.slice(0, -1));
      const { ids, mask } = leftPad(inputs);
      const T = ids[0].length;
      const hidden = this.lm.model.forward(ids, { attentionMask: mask });
      try {
        batch.forEach((reqIndex, b) => {
          const { ids: full, nCont } = encoded[reqIndex];
          const picks = full.slice(-nCont).map((target, j) => ({ row: T - nCont + j, target }));
          const scores = scoreTargets(this.lm.model, hidden, b, picks);
          results[reqIndex] = {
            logprob: scores.reduce((a, s) => a + s.logprob, 0),
            isGreedy: scores.every((s) => s.isArgmax),
            tokens: nCont,
          };
        });
      } finally {
        hidden.dispose();
      }
    }
    return results;
  }

  /** Log-likelihood of whole texts (for perplexity), in windows of the model's context length. */
  loglikelihoodRolling(texts: string[]): number[] {
    const maxLen = this.lm.model.config.maxPositionEmbeddings;
    return texts.map((text) => {
      const start = this.startToken('loglikelihoodRolling');
      const tokens = this.encode(text);
      // lm-evaluation-harness's rolling windows: the first predicts from the start token; each later
      // window predicts up to maxLen new tokens, with as much preceding text as fits as context.
      let total = 0;
      for (let at = 0; at < tokens.length; at += maxLen) {
        const n = Math.min(maxLen, tokens.length - at);
        const context = at === 0 ? [start] : tokens.slice(Math.max(0, at + n - maxLen - 1), at);
        const target = tokens.slice(at, at + n);
        const ids = [...context, ...target];
        const hidden = this.lm.model.forward([ids.slice(0, -1)]);
        try {
          const T = hidden.shape[1];
          total += scoreTargets(this.lm.model, hidden, 0, target.map((t, j) => ({ row: T - n + j, target: t }))).reduce((a, s) => a + s.logprob, 0);
        } finally {
          hidden.dispose();
        }
      }
      return total;
    });
  }

  generateUntil(requests: GenerateUntilRequest[], opts: GenerateOptions = {}): string[] {
    const prefix = this.prefix();
    return requests.map((r) => {
      const [out] = generate(this.lm, [[...prefix, ...this.encode(r.context)]], {
        ...opts,
        maxNewTokens: r.maxNewTokens ?? opts.maxNewTokens ?? 256,
        stop: r.until,
      });
      return out.text;
    });
  }
}
