import { describe, expect, it } from 'vitest';
import { initEngine, tf } from '../lib/engine/index.js';
import { loraLinear, loraLinearReference } from '../lib/engine/ops.js';
import { randomModel } from '../lib/models/load.js';
import type { Example } from '../lib/data/tokenize.js';
import { chunkRows, packRows, toBatch, unpackedRows } from '../lib/train/batches.js';
import { batchLossSum } from '../lib/train/loss.js';
import { seededRandom } from '../lib/util/random.js';
import { TINY_CONFIGS } from './helpers/models.js';

/** Examples of random lengths with a prompt part (no targets) and a reply part (targets). */
function examples(n: number, vocab: number, seed: number, maxLen = 20): Example[] {
  const rnd = seededRandom(seed);
  return Array.from({ length: n }, () => {
    const len = 3 + Math.floor(rnd() * (maxLen - 3));
    const prompt = 1 + Math.floor(rnd() * (len - 2));
    const ids = [1, ...Array.from({ length: len - 1 }, () => 3 + Math.floor(rnd() * (vocab - 3)))];
    return { inputIds: ids, labelMask: Uint8Array.from(ids.map((_, i) => (i >= prompt ? 1 : 0))) };
  });
}

/** Largest |a - b| over each gradient, relative to that reference gradient's largest magnitude. */
function worstRelativeDiff(a: Float32Array[], b: Float32Array[]): number {
  let worst = 0;
  a.forEach((g, i) => {
    const scale = Math.max(1e-3, ...Array.from(b[i], Math.abs));
    for (let j = 0; j < g.length; j++) worst = Math.max(worst, Math.abs(g[j] - b[i][j]) / scale);
  });
  return worst;
}

describe('packing', () => {
  it('greedy knapsack: every example once, rows within the limit, fuller rows than one example per row', () => {
    const exs = examples(40, 50, 1);
    const packed = packRows(exs, 32);
    const plain = unpackedRows(exs, 32);
    const seen = packed.rows.flatMap((r) => {
      const out: string[] = [];
      let start = 0;
      for (let t = 1; t <= r.ids.length; t++) {
        if (t === r.ids.length || r.segments[t] !== r.segments[t - 1]) {
          out.push(r.ids.slice(start, t).join(','));
          start = t;
        }
      }
      return out;
    });
    expect(seen.sort()).toEqual(exs.map((e) => e.inputIds.join(',')).sort());
    expect(packed.rows.every((r) => r.ids.length <= 32)).toBe(true);
    const tokens = exs.reduce((n, e) => n + e.inputIds.length, 0);
    expect(packed.utilisation).toBeCloseTo(tokens / (packed.rows.length * 32), 10);
    expect(packed.rows.length).toBeLessThan(exs.length / 2);
    expect(packed.utilisation).toBeGreaterThan(0.9);
    expect(plain.utilisation).toBeCloseTo(tokens / (40 * 32), 10);
    // A known case: 5+3 and 4+4 fill two rows of 8 exactly.
    const mk = (n: number) => ({ inputIds: new Array(n).fill(5), labelMask: new Uint8Array(n).fill(1) });
    expect(packRows([mk(5), mk(4), mk(3), mk(4)], 8).rows.map((r) => r.ids.length)).toEqual([8, 8]);
  });

  it('pre-training chunks are the concatenated tokens cut to length, remainder dropped', () => {
    const exs = examples(10, 50, 2);
    const all = exs.flatMap((e) => e.inputIds);
    const { rows } = chunkRows(exs, 16);
    expect(rows.length).toBe(Math.floor(all.length / 16));
    expect(rows.flatMap((r) => r.ids)).toEqual(all.slice(0, rows.length * 16));
  });

  for (const [name, mode] of [
    ['llama GQA + llama3 rope, untied', 'gather'],
    ['llama GQA + llama3 rope, untied', 'mask'],
    ['mistral sliding window 5', 'gather'],
    ['mistral sliding window 5', 'mask'],
    ['qwen2 attention bias, tied', 'gather'],
    ['qwen2 attention bias, tied', 'mask'],
    ['gpt_neox partial rotary, parallel residual, exact gelu, LayerNorm', 'gather'],
    ['gpt2 learned positions, Conv1D, fused c_attn, tied', 'mask'],
  ] as const) {
    it(`${name}, ${mode} attention: packed and padded batches have the loss and gradients of each example run alone (1e-5)`, async () => {
      await initEngine();
      const model = randomModel(TINY_CONFIGS[name], { seed: 3, std: 0.2 });
      model.segmentAttention = mode;
      const vocab = model.config.vocabSize;
      const exs = examples(9, vocab, 7, 18);
      const packed = toBatch(packRows(exs, 40).rows);
      const unpacked = toBatch(unpackedRows(exs, 40).rows);
      expect(packed.ids.length).toBeLessThan(unpacked.ids.length);
      expect(packed.targetCount).toBe(unpacked.targetCount);
      const names = [...model.params.keys()];
      const originals = names.map((n) => model.params.get(n)!);
      const lossAndGrads = (batch: typeof packed) => {
        const { value, grads } = tf.valueAndGrads((...ps: tf.Tensor[]) => {
          names.forEach((n, i) => model.params.set(n, ps[i]));
          return batchLossSum(model, batch);
        })(originals);
        names.forEach((n, i) => model.params.set(n, originals[i]));
        return { loss: value.dataSync()[0], grads: grads.map((g) => g.dataSync() as Float32Array) };
      };
      const a = lossAndGrads(packed),
        b = lossAndGrads(unpacked);
      // The reference: each example alone through the ordinary attention path (no segments).
      const { value: refValue, grads: refGrads } = tf.valueAndGrads((...ps: tf.Tensor[]) => {
        names.forEach((n, i) => model.params.set(n, ps[i]));
        const per = exs.map((e) => {
          // Every position's loss, weighted by whether its next token is a target (no gathers).
          const n = e.inputIds.length;
          const next = [...e.inputIds.slice(1), 0];
          const weight = Array.from({ length: n }, (_, t) => (t + 1 < n && e.labelMask[t + 1] ? 1 : 0));
          const h = model.forward([e.inputIds]).reshape([n, model.config.hiddenSize]) as tf.Tensor2D;
          const ce = tf.losses.softmaxCrossEntropy(
            tf.oneHot(tf.tensor1d(next, 'int32'), vocab),
            model.logits(h),
            undefined,
            0,
            tf.Reduction.NONE,
          );
          return tf.sum(tf.mul(ce, tf.tensor1d(weight)));
        });
        return tf.addN(per) as tf.Scalar;
      })(originals);
      names.forEach((n, i) => model.params.set(n, originals[i]));
      const ref = { loss: refValue.dataSync()[0], grads: refGrads.map((g) => g.dataSync() as Float32Array) };
      // Without RoPE (GPT-2) a key bias shifts every score of a query equally, which softmax ignores: its
      // exact gradient is 0, and what the three runs give for it is rounding noise, checked in absolute terms.
      const zero = names.map((n) => model.config.positions === 'learned' && n.endsWith('k_proj.bias'));
      const pick = (g: Float32Array[], isZero: boolean) => g.filter((_, i) => zero[i] === isZero);
      for (const got of [a, b]) {
        expect(Math.abs(got.loss - ref.loss) / Math.abs(ref.loss)).toBeLessThan(1e-5);
        expect(worstRelativeDiff(pick(got.grads, false), pick(ref.grads, false))).toBeLessThan(1e-5);
        for (const g of pick(got.grads, true)) expect(Math.max(...Array.from(g, Math.abs))).toBeLessThan(1e-6);
      }
      // Without segments the packed rows would attend across examples: the loss differs.
      const crossed = { ...packed, segments: packed.segments.map((r) => r.map((s) => (s ? 1 : 0))) };
      const c = batchLossSum(model, crossed).dataSync()[0];
      expect(Math.abs(c - ref.loss)).toBeGreaterThan(1e-3);
    });
  }
});

describe('LoRA linear op', () => {
  it('forward and gradients for x, A and B equal the composed-op reference', async () => {
    await initEngine();
    const x = tf.randomNormal([7, 12], 0, 1, 'float32', 1) as tf.Tensor2D;
    const W = tf.randomNormal([12, 10], 0, 0.3, 'float32', 2) as tf.Tensor2D;
    const A = tf.randomNormal([12, 4], 0, 0.3, 'float32', 3) as tf.Tensor2D;
    const B = tf.randomNormal([4, 10], 0, 0.3, 'float32', 4) as tf.Tensor2D;
    const dy = tf.randomNormal([7, 10], 0, 1, 'float32', 5);
    const run = (f: typeof loraLinearReference) => {
      const { value, grads } = tf.valueAndGrads(
        (xx: tf.Tensor, aa: tf.Tensor, bb: tf.Tensor) =>
          tf.sum(
            tf.mul(f(xx as tf.Tensor2D, xx as tf.Tensor2D, W, aa as tf.Tensor2D, bb as tf.Tensor2D, 2.5), dy),
          ) as tf.Scalar,
      )([x, A, B]);
      return [value, ...grads].map((t) => Array.from(t.dataSync()));
    };
    const got = run(loraLinear),
      want = run(loraLinearReference);
    got.forEach((g, i) =>
      g.forEach((v, j) => expect(Math.abs(v - want[i][j])).toBeLessThan(1e-4 * Math.max(1, Math.abs(want[i][j])))),
    );
    expect(want[3].some((v) => v !== 0)).toBe(true); // B's gradient is non-trivial
  });
});
