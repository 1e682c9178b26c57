import * as tf from '@tensorflow/tfjs';
import { crossEntropy, embedding } from '../engine/ops.js';
import type { LlamaModel } from '../models/llama.js';
import { isTarget, type Batch } from './batches.js';

/**
 * Summed next-token cross-entropy over a batch's targets (divide by the target count for the mean).
 * Only target positions are projected to the vocabulary. Segments keep packed examples apart.
 */
/** The flat positions (row * T + t) that predict a target, the tokens they predict, and their rows. */
function targetPositions(batch: Batch): { rows: number[]; next: number[]; owner: number[] } {
  const T = batch.ids[0].length;
  const rows: number[] = [],
    next: number[] = [],
    owner: number[] = [];
  batch.ids.forEach((ids, b) => {
    const row = { targets: batch.targets[b], segments: batch.segments[b] };
    for (let t = 0; t + 1 < T; t++) {
      if (isTarget(row, t)) {
        rows.push(b * T + t);
        next.push(ids[t + 1]);
        owner.push(b);
      }
    }
  });
  return { rows, next, owner };
}

export function batchLossSum(model: LlamaModel, batch: Batch): tf.Scalar {
  const T = batch.ids[0].length;
  const { rows, next } = targetPositions(batch);
  return tf.tidy(() => {
    if (!rows.length) return tf.scalar(0);
    const hidden = model.forward(batch.ids, { segments: batch.segments });
    // Rows picked with `embedding` (a gather whose gradient runs on tfjs-wasm too).
    const H = model.config.hiddenSize;
    const picked = embedding(
      hidden.reshape([batch.ids.length * T, H]) as tf.Tensor2D,
      tf.tensor1d(rows, 'int32'),
    ) as tf.Tensor2D;
    const logits = model.logits(picked);
    return tf.sum(crossEntropy(logits, tf.tensor1d(next, 'int32'))) as tf.Scalar;
  });
}

/**
 * Each row's summed log-probability of its targets (a response's log-likelihood): the rows'
 * cross-entropies gathered per row by a 0/1 matrix product, so gradients flow on every backend.
 */
export function rowLogprobSums(model: LlamaModel, batch: Batch): tf.Tensor1D {
  const T = batch.ids[0].length;
  const { rows, next, owner } = targetPositions(batch);
  return tf.tidy(() => {
    const B = batch.ids.length;
    if (!rows.length) return tf.zeros([B]) as tf.Tensor1D;
    const hidden = model.forward(batch.ids, { segments: batch.segments });
    const H = model.config.hiddenSize;
    const picked = embedding(hidden.reshape([B * T, H]) as tf.Tensor2D, tf.tensor1d(rows, 'int32')) as tf.Tensor2D;
    const ce = crossEntropy(model.logits(picked), tf.tensor1d(next, 'int32'));
    const assign = new Float32Array(B * rows.length);
    owner.forEach((b, k) => (assign[b * rows.length + k] = 1));
    return tf
      .neg(tf.matMul(tf.tensor2d(assign, [B, rows.length]), tf.reshape(ce, [rows.length, 1])))
      .reshape([B]) as tf.Tensor1D;
  });
}
