/**
 * Beam search (Hugging Face's semantics): numBeams hypotheses, each step extended by the best
 * 2 x numBeams next tokens overall; a hypothesis ending in a stop id is finished with the score
 * sum(logprobs) / length^lengthPenalty (length: generated tokens, the stop id included); the
 * search ends when numBeams are finished and no running beam can beat the worst of them.
 */
import * as tf from '@tensorflow/tfjs';
import { KVCache } from './kv-cache.js';
import { continuationText } from './continuation.js';
import type { GenerateResult } from './generate.js';
import { LlamaModel } from './llama.js';
import type { LoadedModel } from './load.js';
import { topTokens } from './score.js';

export interface BeamOptions {
  numBeams: number;
  /** > 0 favours longer replies, < 0 shorter ones (default 1). */
  lengthPenalty?: number;
  maxNewTokens: number;
  stopIds: Set<number>;
}

interface Hypothesis {
  ids: number[];
  logprob: number;
}

export async function beamSearch(
  loaded: LoadedModel,
  prompt: number[],
  opts: BeamOptions,
): Promise<GenerateResult & { score: number }> {
  const { model } = loaded;
  const k = opts.numBeams,
    lp = opts.lengthPenalty ?? 1;
  const V = model.config.vocabSize;
  const steps = Math.max(0, Math.min(opts.maxNewTokens, model.config.maxPositionEmbeddings - prompt.length));
  const norm = (h: Hypothesis) => h.logprob / Math.max(1, h.ids.length) ** lp;
  // Every row starts from the prompt; only the first is live, so the first step does not pick one token k times.
  let beams: Hypothesis[] = Array.from({ length: k }, (_, b) => ({ ids: [], logprob: b === 0 ? 0 : -Infinity }));
  const finished: Hypothesis[] = [];
  const cache = new KVCache(model.config, k, prompt.length + steps);
  try {
    let input = beams.map(() => prompt);
    for (let step = 0; step < steps; step++) {
      const logprobs = tf.tidy(() => {
        const h = model.forward(input, { cache });
        const T = h.shape[1];
        return tf.logSoftmax(
          model.logits(
            LlamaModel.pickRows(
              h,
              beams.map((_, b) => b * T + T - 1),
            ),
          ),
        );
      });
      const data = (await logprobs.data()) as Float32Array;
      logprobs.dispose();
      if (data.some(Number.isNaN))
        throw new Error('the model produced non-finite logits in beam search: its weights or activations overflowed');
      // The best 2k overall are among each row's best 2k.
      const candidates = beams.flatMap((beam, row) =>
        beam.logprob === -Infinity
          ? []
          : topTokens(data.subarray(row * V, (row + 1) * V), 2 * k).map((token) => ({
              row,
              token,
              logprob: beam.logprob + data[row * V + token],
            })),
      );
      candidates.sort((a, b) => b.logprob - a.logprob || a.row - b.row || a.token - b.token);
      const next: (Hypothesis & { row: number })[] = [];
      for (const [rank, c] of candidates.slice(0, 2 * k).entries()) {
        const ids = [...beams[c.row].ids, c.token];
        if (opts.stopIds.has(c.token)) {
          // As in Hugging Face, a stop among the best k is a finished reply; below them it is ignored.
          if (rank < k) finished.push({ ids, logprob: c.logprob });
        } else next.push({ ids, logprob: c.logprob, row: c.row });
        if (next.length === k) break;
      }
      if (done(finished, next, k, norm, lp, steps)) break;
      while (next.length < k) next.push({ ids: [], logprob: -Infinity, row: 0 });
      cache.reorder(next.map((n) => n.row));
      beams = next.map(({ ids, logprob }) => ({ ids, logprob }));
      input = next.map((n) => [n.ids.at(-1) ?? prompt.at(-1)!]);
    }
  } finally {
    cache.dispose();
  }
  for (const b of beams) if (b.logprob > -Infinity && b.ids.length) finished.push(b);
  const best = finished.reduce((a, b) => (norm(b) > norm(a) ? b : a), finished[0] ?? { ids: [], logprob: 0 });
  const stopped = best.ids.length > 0 && opts.stopIds.has(best.ids.at(-1)!);
  const text = loaded.tokenizer
    ? continuationText(loaded, prompt.slice(-16), stopped ? best.ids.slice(0, -1) : best.ids)
    : '';
  return {
    promptIds: prompt,
    ids: best.ids,
    text,
    finishReason: stopped ? 'stop' : 'length',
    seed: 0,
    score: norm(best),
  };
}

/** k replies finished and none of the running beams can still beat the worst of them. */
function done(
  finished: Hypothesis[],
  running: Hypothesis[],
  k: number,
  norm: (h: Hypothesis) => number,
  lp: number,
  maxLen: number,
): boolean {
  if (finished.length < k || !running.length) return finished.length >= k || !running.length;
  const worst = Math.min(...finished.map(norm));
  // A running beam's sum only falls; with lp > 0 a longer reply divides by more, so its best is at the longest length.
  const best = Math.max(...running.map((h) => h.logprob / (lp > 0 ? maxLen : h.ids.length) ** lp));
  return best <= worst;
}
