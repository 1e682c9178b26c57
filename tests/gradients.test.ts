import { describe, expect, it } from 'vitest';
import { initEngine, tf } from '../lib/engine/index.js';
import {
  crossEntropy,
  crossEntropyReference,
  embedding,
  rmsNorm,
  rmsNormReference,
  rope,
  ropeReference,
} from '../lib/engine/ops.js';
import { parseConfig } from '../lib/models/config.js';
import { ropeInvFreq, ropeTables } from '../lib/models/rope.js';
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
    expect((g.arraySync() as number[][])[4][0]).not.toBe(0);
  });

  it.each([
    [
      'qwen2 attention bias, tied',
      [
        'model.embed_tokens.weight',
        'model.layers.0.self_attn.q_proj.weight',
        'model.layers.1.self_attn.k_proj.bias',
        'model.layers.1.mlp.down_proj.weight',
        'model.norm.weight',
      ],
    ],
    [
      'gpt_neox partial rotary, parallel residual, exact gelu, LayerNorm',
      [
        'model.layers.0.self_attn.q_proj.weight',
        'model.layers.1.input_layernorm.bias',
        'model.layers.1.mlp.up_proj.bias',
        'model.layers.0.self_attn.o_proj.bias',
        'lm_head.weight',
      ],
    ],
    [
      'gpt2 learned positions, Conv1D, fused c_attn, tied',
      [
        'model.embed_positions.weight',
        'model.layers.0.self_attn.v_proj.bias',
        'model.layers.1.post_attention_layernorm.weight',
        'model.layers.0.mlp.down_proj.weight',
        'model.norm.bias',
      ],
    ],
  ])('%s: model loss gradients match central finite differences', async (config, names) => {
    await initEngine();
    const model = randomModel(TINY_CONFIGS[config], { seed: 4, std: 0.3 });
    const ids = [[1, 7, 3, 9, 12, 5]];
    const targets = tf.tensor1d([7, 3, 9, 12, 5, 8], 'int32');
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

describe('cross-entropy', () => {
  it('matches logSumExp - x[target] and its gradient softmax - onehot, at several logit scales', async () => {
    await initEngine();
    for (const scale of [0.1, 3, 40]) {
      const logits = tf.mul(tf.randomNormal([37, 1001], 0, 1, 'float32', 9), scale) as tf.Tensor2D;
      const targets = tf.tensor1d(
        Array.from({ length: 37 }, (_, i) => (i * 271) % 1001),
        'int32',
      );
      const w = tf.randomUniform([37], 0.5, 1.5, 'float32', 3);
      const lossOf = (f: typeof crossEntropy) => (x: tf.Tensor) => tf.sum(tf.mul(f(x as tf.Tensor2D, targets), w));
      const got = crossEntropy(logits, targets).dataSync();
      const want = crossEntropyReference(logits, targets).dataSync();
      got.forEach((x, i) => expect(Math.abs(x - want[i])).toBeLessThan(1e-5 * Math.max(1, Math.abs(want[i]))));
      const g = tf.grad(lossOf(crossEntropy))(logits).dataSync();
      const gr = tf.grad(lossOf(crossEntropyReference))(logits).dataSync();
      let md = 0;
      g.forEach((x, i) => (md = Math.max(md, Math.abs(x - gr[i]))));
      expect(md).toBeLessThan(1e-5);
    }
  });

  it('runs the fused kernel exactly when the native add-on is active', async () => {
    const info = await initEngine();
    const logits = tf.randomNormal([4, 50]) as tf.Tensor2D;
    const targets = tf.tensor1d([1, 2, 3, 4], 'int32');
    const prof = await tf.profile(() =>
      tf.grad((x: tf.Tensor) => tf.sum(crossEntropy(x as tf.Tensor2D, targets)))(logits),
    );
    const names = prof.kernels.map((k) => k.name);
    expect(names.includes('LlmboxSoftmaxXent')).toBe(info.native.enabled);
    expect(names.includes('LlmboxSoftmaxXentGrad')).toBe(info.native.enabled);
  });
});

describe('RoPE op', () => {
  it('equals the composed rotate_half form, in value and gradient, on real tables', async () => {
    const info = await initEngine();
    const inv = ropeInvFreq(
      parseConfig({ ...TINY_CONFIGS['llama linear rope, tied, MHA, attention and mlp biases'], hidden_size: 48 }),
    );
    const positions = Array.from({ length: 2 * 7 }, (_, i) => (i * 5) % 23);
    const { cos, sin } = ropeTables(inv, positions);
    const D = inv.length * 2;
    const c = tf.tensor4d(cos, [2, 7, 1, D]),
      s = tf.tensor4d(sin, [2, 7, 1, D]);
    const x = tf.randomNormal([2, 7, 3, D], 0, 1, 'float32', 4) as tf.Tensor4D;
    const dy = tf.randomNormal([2, 7, 3, D], 0, 1, 'float32', 5);
    const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0];
    expect(maxDiff(rope(x, c, s), ropeReference(x, c, s))).toBeLessThan(1e-6);
    const loss = (f: typeof rope) => (v: tf.Tensor) => tf.sum(tf.mul(f(v as tf.Tensor4D, c, s), dy));
    expect(maxDiff(tf.grad(loss(rope))(x), tf.grad(loss(ropeReference))(x))).toBeLessThan(1e-6);
    const prof = await tf.profile(() => rope(x, c, s));
    expect(prof.kernels.some((k) => k.name === 'LlmboxRope')).toBe(info.native.enabled);
  });
});

describe('RMSNorm op', () => {
  it('equals the composed form in value and in the gradients for x and w, as one kernel where the add-on runs', async () => {
    const info = await initEngine();
    const x = tf.randomNormal([3, 5, 24], 0, 2, 'float32', 8);
    const w = tf.randomNormal([24], 1, 0.3, 'float32', 9) as tf.Tensor1D;
    const dy = tf.randomNormal([3, 5, 24], 0, 1, 'float32', 10);
    const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0];
    expect(maxDiff(rmsNorm(x, w, 1e-5), rmsNormReference(x, w, 1e-5))).toBeLessThan(2e-6);
    const loss = (f: typeof rmsNorm) => (v: tf.Tensor, u: tf.Tensor) =>
      tf.sum(tf.mul(f(v, u as tf.Tensor1D, 1e-5), dy));
    const [gx, gw] = tf.grads(loss(rmsNorm))([x, w]);
    const [rx, rw] = tf.grads(loss(rmsNormReference))([x, w]);
    expect(maxDiff(gx, rx)).toBeLessThan(1e-5);
    expect(maxDiff(gw, rw)).toBeLessThan(1e-4);
    const prof = await tf.profile(() => rmsNorm(x, w, 1e-5));
    // (customGrad adds an unnamed scope entry)
    expect(prof.kernels.map((k) => k.name).filter(Boolean)).toEqual(
      info.native.enabled ? ['LlmboxRmsNorm'] : expect.arrayContaining(['Rsqrt']),
    );
  });
});
