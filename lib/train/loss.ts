import * as tf from '@tensorflow/tfjs';
import { crossEntropy, embedding } from '../engine/ops.js';
import type { LlamaModel } from '../models/llama.js';
import { isTarget, segmentsOf, type Batch } from './batches.js';

/** The flat positions (row * T + t) that predict a target, and the tokens they predict. */
function targetPositions(batch: Batch): { rows: number[]; next: number[] } {
  const T = batch.ids[0].length;
  const rows: number[] = [],
    next: number[] = [];
  batch.ids.forEach((ids, b) => {
    const row = { targets: batch.targets[b], segments: batch.segments[b] };
    for (let t = 0; t + 1 < T; t++) {
      if (isTarget(row, t)) {
        rows.push(b * T + t);
        next.push(ids[t + 1]);
      }
    }
  });
  return { rows, next };
}

/**
 * Summed next-token cross-entropy over a batch's targets (divide by the target count for the mean).
 * Only target positions are projected to the vocabulary. Segments keep packed examples apart.
 */
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
 * Each segment's summed log-probability of its targets (a response's log-likelihood), segments in
 * reading order (segmentsOf: one per right-padded row, several per packed row). The cross-entropies
 * are summed per segment by a 0/1 matrix product, so gradients flow on every backend.
 */
export function segmentLogprobSums(model: LlamaModel, batch: Batch): tf.Tensor1D {
  const T = batch.ids[0].length;
  const { rows, next } = targetPositions(batch);
  const segs = segmentsOf(batch.segments);
  return tf.tidy(() => {
    const B = batch.ids.length,
      S = segs.length;
    if (!rows.length) return tf.zeros([S]) as tf.Tensor1D;
    const hidden = model.forward(batch.ids, { segments: batch.segments });
    const H = model.config.hiddenSize;
    const picked = embedding(hidden.reshape([B * T, H]) as tf.Tensor2D, tf.tensor1d(rows, 'int32')) as tf.Tensor2D;
    const ce = crossEntropy(model.logits(picked), tf.tensor1d(next, 'int32'));
    const assign = new Float32Array(S * rows.length);
    let s = 0;
    rows.forEach((flat, k) => {
      while (segs[s].last < flat) s++;
      assign[s * rows.length + k] = 1;
    });
    return tf
      .neg(tf.matMul(tf.tensor2d(assign, [S, rows.length]), tf.reshape(ce, [rows.length, 1])))
      .reshape([S]) as tf.Tensor1D;
  });
}
