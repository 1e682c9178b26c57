import { describe, expect, it } from 'vitest';
import { initEngine, tf } from '../lib/engine/index.js';
import { embedding } from '../lib/engine/ops.js';
import { randomModel } from '../lib/models/load.js';
import { TINY_CONFIGS } from './helpers/models.js';

describe('gradients', () => {
  it('embedding table gradient is the scatter-add of output gradients (repeated ids accumulate)', async () => {
    await initEngine();
    const table = tf.randomNormal([6, 3], 0, 1, 'float32', 1) as tf.Tensor2D;
    const ids = tf.tensor1d([4, 1, 4, 0], 'int32');
    const dy = tf.randomNormal([4, 3], 0, 1, 'float32', 2);
    const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(embedding(t as tf.Tensor2D, ids), dy)))(table);
    // Reference: one-hot(ids)^T @ dy
    const ref = tf.matMul(tf.oneHot(ids, 6).toFloat(), dy, true, false);
    const diff = tf.max(tf.abs(tf.sub(g, ref))).dataSync()[0];
    expect(diff).toBeLessThan(1e-6);
    expect(g.arraySync()[4][0]).not.toBe(0);
  });

  it('model loss gradients match central finite differences', async () => {
    await initEngine();
    const model = randomModel(TINY_CONFIGS['qwen2 attention bias, tied'], { seed: 4, std: 0.3 });
    const ids = [[1, 7, 3, 9, 12, 5]];
    const targets = tf.tensor1d([7, 3, 9, 12, 5, 8], 'int32');
    const names = ['model.embed_tokens.weight', 'model.layers.0.self_attn.q_proj.weight', 'model.layers.1.self_attn.k_proj.bias', 'model.layers.1.mlp.down_proj.weight', 'model.norm.weight'];
    const loss = () => {
      const h = model.forward(ids).reshape([6, model.config.hiddenSize]) as tf.Tensor2D;
      return tf.losses.softmaxCrossEntropy(tf.oneHot(targets, model.config.vocabSize), model.logits(h)) as tf.Scalar;
    };
    const originals = names.map((n) => model.params.get(n)!);
    const f = (...ps: tf.Tensor[]) => {
      names.forEach((n, i) => model.params.set(n, ps[i]));
      return loss();
    };
    const grads = tf.grads(f)(originals);
    names.forEach((n, i) => model.params.set(n, originals[i]));
    const eps = 3e-3;
    names.forEach((name, i) => {
      const base = originals[i].dataSync().slice();
      const g = grads[i].dataSync();
      // Check the largest-gradient coordinate and one more; float32 limits the precision of the difference.
      let big = 0;
      g.forEach((x, j) => (big = Math.abs(x) > Math.abs(g[big]) ? j : big));
      for (const j of [big, (big + 7) % base.length]) {
        const at = (delta: number) => {
          const p = base.slice();
          p[j] += delta;
          model.params.set(name, tf.tensor(p, originals[i].shape));
          const v = loss().dataSync()[0];
          model.params.set(name, originals[i]);
          return v;
        };
        const numeric = (at(eps) - at(-eps)) / (2 * eps);
        expect(Math.abs(numeric - g[j])).toBeLessThan(1e-3 + 1e-2 * Math.abs(g[j]));
      }
    });
  });
});
