/**
 * The in-process engine behind llmbox serve: a queue that runs requests arriving together as one
 * batch (prompt scoring and greedy generation), one at a time for sampled and streamed generation.
 */
import { continuationText } from '../models/continuation.js';
import { generate, generateStream, type GenerateOptions, type GenerateResult } from '../models/generate.js';
import { leftPad } from '../models/llama.js';
import type { LoadedModel } from '../models/load.js';
import { scoreTargets, type TargetScore } from '../models/score.js';
import { tokenBatches } from '../util/batches.js';

type Job =
  | { kind: 'score'; ids: number[]; topK: number; resolve: (s: TargetScore[]) => void; reject: (e: unknown) => void }
  | {
      kind: 'generate';
      ids: number[];
      opts: GenerateOptions;
      key: string;
      resolve: (r: GenerateResult) => void;
      reject: (e: unknown) => void;
    }
  | {
      kind: 'stream';
      ids: number[];
      opts: GenerateOptions;
      onText: (t: string) => void;
      resolve: (r: GenerateResult) => void;
      reject: (e: unknown) => void;
    };

export interface EngineStats {
  requests: number;
  batches: number;
  /** The most requests run in one batch. */
  largestBatch: number;
}

/** Tokens decoded before a token to find its text (SentencePiece drops a word's space when decoded alone). */
const PIECE_CONTEXT = 8;

export class ServeEngine {
  readonly stats: EngineStats = { requests: 0, batches: 0, largestBatch: 0 };
  private readonly jobs: Job[] = [];
  private draining = false;

  constructor(
    readonly loaded: LoadedModel,
    private readonly opts: { batchSize: number; maxBatchTokens: number; batchWindowMs: number },
  ) {}

  get maxLen(): number {
    return this.loaded.model.config.maxPositionEmbeddings;
  }

  /** Token ids of a prompt: text gets the tokenizer's special tokens (BOS), as Hugging Face servers do; ids are taken as given. */
  encode(prompt: string | number[]): number[] {
    if (typeof prompt !== 'string') return prompt;
    return this.loaded.tokenizer!.encode(prompt, { addSpecialTokens: true });
  }

  /**
   * Each token's text and its offset in the decoded text, decoded incrementally over a short window
   * (vLLM's rule): a token that ends inside a multi-byte character reads as empty and the token that
   * completes it carries the whole character; special tokens read as empty.
   */
  pieces(ids: number[]): { pieces: string[]; offsets: number[] } {
    const tok = this.loaded.tokenizer!;
    const decode = (from: number, to: number) => (to > from ? tok.decode(ids.slice(from, to)) : '');
    const pieces: string[] = [],
      offsets: number[] = [];
    let prefixAt = 0,
      readAt = 0,
      at = 0;
    for (let i = 0; i < ids.length; i++) {
      const head = decode(prefixAt, readAt),
        full = decode(prefixAt, i + 1);
      let piece = '';
      if (full.length > head.length && !full.endsWith('\uFFFD')) {
        piece = full.slice(head.length);
        prefixAt = readAt;
        readAt = i + 1;
      }
      pieces.push(piece);
      offsets.push(at);
      at += piece.length;
    }
    return { pieces, offsets };
  }

  /** The text of one token id as it reads after `before` (for top log-probability keys). */
  tokenText(before: number[], id: number): string {
    return continuationText(this.loaded, before.slice(-PIECE_CONTEXT), [id]);
  }

  /** log p(ids[i] | ids[..i]) for i >= 1, with the topK alternatives at each position. */
  score(ids: number[], topK: number): Promise<TargetScore[]> {
    return new Promise((resolve, reject) => this.push({ kind: 'score', ids, topK, resolve, reject }));
  }

  generate(ids: number[], opts: GenerateOptions): Promise<GenerateResult> {
    // Greedy requests with the same settings decode as one batch; sampled ones keep their own seed.
    const key = (opts.temperature ?? 0) > 0 ? `sampled:${this.stats.requests}` : JSON.stringify({ ...opts, seed: 0 });
    return new Promise((resolve, reject) => this.push({ kind: 'generate', ids, opts, key, resolve, reject }));
  }

  stream(ids: number[], opts: GenerateOptions, onText: (t: string) => void): Promise<GenerateResult> {
    return new Promise((resolve, reject) => this.push({ kind: 'stream', ids, opts, onText, resolve, reject }));
  }

  private push(job: Job): void {
    this.jobs.push(job);
    this.stats.requests++;
    if (!this.draining) {
      this.draining = true;
      // An idle server waits a moment, so requests sent together (on separate connections) share a batch.
      setTimeout(() => void this.drain(), this.opts.batchWindowMs);
    }
  }

  /** Runs what is queued, a batch at a time, letting new requests in between batches. */
  private async drain(): Promise<void> {
    try {
      while (this.jobs.length) {
        const first = this.jobs[0];
        const take =
          first.kind === 'stream'
            ? [first]
            : this.jobs.filter(
                (j) => j.kind === first.kind && (j.kind !== 'generate' || j.key === (first as { key: string }).key),
              );
        for (const j of take) this.jobs.splice(this.jobs.indexOf(j), 1);
        this.stats.batches++;
        this.stats.largestBatch = Math.max(this.stats.largestBatch, take.length);
        try {
          if (first.kind === 'score') await this.runScores(take as Extract<Job, { kind: 'score' }>[]);
          else if (first.kind === 'generate') await this.runGenerate(take as Extract<Job, { kind: 'generate' }>[]);
          else first.resolve(await generateStream(this.loaded, first.ids, first.opts, first.onText));
        } catch (e) {
          for (const j of take) j.reject(e);
        }
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      this.draining = false;
    }
  }

  private async runScores(jobs: Extract<Job, { kind: 'score' }>[]): Promise<void> {
    const sorted = [...jobs].sort((a, b) => b.ids.length - a.ids.length);
    for (const batch of this.batches(sorted, (j) => j.ids.length)) {
      const scorable = batch.filter((j) => j.ids.length > 1);
      for (const j of batch) if (j.ids.length <= 1) j.resolve([]);
      if (!scorable.length) continue;
      const { ids, mask } = leftPad(scorable.map((j) => j.ids.slice(0, -1)));
      const T = ids[0].length;
      const hidden = this.loaded.model.forward(ids, { attentionMask: mask });
      try {
        for (const [b, j] of scorable.entries()) {
          const targets = j.ids.slice(1);
          j.resolve(
            await scoreTargets(
              this.loaded.model,
              hidden,
              b,
              targets.map((target, k) => ({ row: T - targets.length + k, target })),
              j.topK,
            ),
          );
        }
      } finally {
        hidden.dispose();
      }
    }
  }

  private async runGenerate(jobs: Extract<Job, { kind: 'generate' }>[]): Promise<void> {
    const sorted = [...jobs].sort((a, b) => a.ids.length - b.ids.length);
    for (const batch of this.batches(sorted, (j) => j.ids.length + (j.opts.maxNewTokens ?? 0))) {
      const results = await generate(
        this.loaded,
        batch.map((j) => j.ids),
        batch[0].opts,
      );
      batch.forEach((j, i) => j.resolve(results[i]));
    }
  }

  private batches<T>(items: T[], tokens: (item: T) => number): T[][] {
    return tokenBatches(items, tokens, this.opts.batchSize, this.opts.maxBatchTokens);
  }
}
