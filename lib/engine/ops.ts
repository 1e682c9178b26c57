import * as tf from '@tensorflow/tfjs';

/**
 * Row lookup with a gradient that every backend can run. tfjs differentiates gather through
 * UnsortedSegmentSum, which tfjs-wasm lacks; where it is missing the table gradient is a
 * scatter-add done on the host.
 */
export function embedding(table: tf.Tensor2D, ids: tf.Tensor): tf.Tensor {
  if (tf.getKernel('UnsortedSegmentSum', tf.getBackend())) return tf.gather(table, ids);
  const [vocab, dim] = table.shape;
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [tableT, idsT, save] = args as [tf.Tensor2D, tf.Tensor, tf.GradSaveFunc];
    save([idsT]);
    return {
      value: tf.gather(tableT, idsT),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const g = (Array.isArray(dy) ? dy[0] : dy).dataSync() as Float32Array;
        const idx = saved[0].dataSync();
        const out = new Float32Array(vocab * dim);
        for (let i = 0; i < idx.length; i++) {
          const row = idx[i] * dim, src = i * dim;
          for (let j = 0; j < dim; j++) out[row + j] += g[src + j];
        }
        return [tf.tensor2d(out, [vocab, dim]), tf.zerosLike(saved[0])];
      },
    };
  });
  return f(table, ids);
}

/** RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * weight. */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor1D, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const ms = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, eps))), weight);
  });
}

/** silu(gate) * up, the SwiGLU feed-forward activation. */
export function swiglu(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(gate, tf.sigmoid(gate)), up));
}
