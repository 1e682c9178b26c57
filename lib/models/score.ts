import * as tf from '@tensorflow/tfjs';
import { LlmboxError } from '../errors.js';
import { LlamaModel } from './llama.js';

/** Rows of logits projected at a time: bounds memory at chunk x vocab however long the sequence. */
const CHUNK = 128;

/**
 * log p(ids[i+1] | ids[..i]) for every i, under teacher forcing. Log-softmax runs in float64 on
 * float32 logits, a chunk of positions at a time, so [T, vocab] is never held at once.
 */
export async function nextTokenLogprobs(model: LlamaModel, ids: number[]): Promise<number[]> {
  if (ids.length < 2) return [];
  // Positions past the trained window give numbers that look like any others.
  const max = model.config.maxPositionEmbeddings;
  if (ids.length > max)
    throw new LlmboxError(`${ids.length} tokens are more than the model's ${max} positions`, {
      field: 'max_position_embeddings',
      fix: `score at most ${max} tokens at a time (perplexity tasks use rolling windows)`,
    });
  const hidden = model.forward([ids]);
  try {
    const scores = await scoreTargets(
      model,
      hidden,
      0,
      ids.slice(1).map((target, i) => ({ row: i, target })),
    );
    return scores.map((s) => s.logprob);
  } finally {
    hidden.dispose();
  }
}

export interface TargetScore {
  logprob: number;
  /** The target is the most likely token there (lowest id on ties). */
  isArgmax: boolean;
  /** With topK > 0: the topK most likely tokens there and their log-probabilities, most likely first. */
  top?: [number, number][];
}

/** Log-probability of each chosen target at a chosen position of one batch row of hidden states, and whether greedy decoding would have picked it. */
export async function scoreTargets(
  model: LlamaModel,
  hidden: tf.Tensor3D,
  batchIndex: number,
  picks: { row: number; target: number }[],
  topK = 0,
): Promise<TargetScore[]> {
  const T = hidden.shape[1];
  const V = model.config.vocabSize;
  const out: TargetScore[] = [];
  for (let start = 0; start < picks.length; start += CHUNK) {
    const chunk = picks.slice(start, start + CHUNK);
    const logits = tf.tidy(() =>
      model.logits(
        LlamaModel.pickRows(
          hidden,
          chunk.map((p) => batchIndex * T + p.row),
        ),
      ),
    );
    // Read asynchronously: a GPU backend (webgpu) cannot read back synchronously in Node.
    const data = await logits.data();
    logits.dispose();
    chunk.forEach((p, i) => {
      let max = -Infinity,
        arg = 0;
      for (let v = 0; v < V; v++) {
        if (data[i * V + v] > max) {
          max = data[i * V + v];
          arg = v;
        }
      }
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(data[i * V + v] - max);
      const logZ = max + Math.log(sum);
      // NaN anywhere in a row makes every score NaN: a number no metric may silently average.
      if (!Number.isFinite(logZ))
        throw new Error(`the model produced non-finite logits (row ${p.row}): its weights or activations overflowed`);
      const score: TargetScore = { logprob: data[i * V + p.target] - logZ, isArgmax: arg === p.target };
      if (topK > 0)
        score.top = topTokens(data.subarray(i * V, (i + 1) * V), topK).map((v) => [v, data[i * V + v] - logZ]);
      out.push(score);
    });
  }
  return out;
}

/** Ids of the k largest values, largest first (lowest id on ties). */
export function topTokens(row: ArrayLike<number>, k: number): number[] {
  const best: number[] = [];
  for (let v = 0; v < row.length; v++) {
    if (best.length === k && row[v] <= row[best[k - 1]]) continue;
    let at = best.length < k ? best.length : k - 1;
    best[at] = v;
    while (at > 0 && row[best[at]] > row[best[at - 1]]) {
      [best[at], best[at - 1]] = [best[at - 1], best[at]];
      at--;
    }
  }
  return best;
}
