// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import { describe, expect, it } from 'vitest';
import { initEngine, tf } from '../lib/engine/index.js';
import { loadModel } from '../lib/models/load.js';
import { seededRandom } from '../lib/util/random.js';
import { blockScales, dequantizeNF4, NF4_LEVELS, nf4Bytes, quantizeNF4 } from '../lib/models/nf4.js';
import { addLora, dropLora, mergeLora } from '../lib/train/lora.js';
import { train } from '../lib/train/trainer.js';
import { trainPreference } from '../lib/train/preference.js';
import { trainReward } from '../lib/train/reward.js';
import { SHARED_DATA, STORIES } from './helpers/models.js';

function normal(n: number, seed: number): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r()) * 0.02);
}

async function logits(lm: Awaited<ReturnType<typeof loadModel>>, ids = [1, 403, 407, 261, 300]) {
  const h = lm.model.forward([ids]);
  const out = lm.model.logits(h.reshape([ids.length, lm.model.config.hiddenSize]) as tf.Tensor2D);
  const data = Array.from(out.dataSync());
  tf.dispose([h, out]);
  return data;
}

describe('NF4 with double quantization', () => {
  it('levels are symmetric quantiles with an exact zero; each value takes the nearest level of its block scale', () => {
    expect(NF4_LEVELS.length).toBe(16);
    expect(NF4_LEVELS[0]).toBe(-1);
    expect(NF4_LEVELS[7]).toBe(0);
    expect(NF4_LEVELS[15]).toBe(1);
    const x = normal(64 * 300 + 17, 1);
    const q = quantizeNF4(x, [x.length]);
    const y = dequantizeNF4(q);
    const scales = blockScales(q);
    for (let i = 0; i < x.length; i += 7) {
      const s = scales[Math.floor(i / 64)];
      const dists = Array.from(NF4_LEVELS, (l) => Math.abs(x[i] / s - l));
      const best = Math.min(...dists);
      expect(Math.abs(x[i] / s - y[i] / s)).toBeCloseTo(best, 5);
    }
    // The double-quantized block scales stay within 1/254 of the range around their mean.
    const exact = Array.from({ length: scales.length }, (_, b) =>
      Math.max(...Array.from(x.subarray(b * 64, (b + 1) * 64), Math.abs)),
    );
    const spread = Math.max(...exact.map((e) => Math.abs(e - q.absmaxOffset)));
    exact.forEach((e, b) => expect(Math.abs(scales[b] - e)).toBeLessThanOrEqual(spread / 254 + 1e-9));
    // Error: mean absolute error well under the spacing of the levels for N(0, sigma) weights.
    const mae = x.reduce((a, v, i) => a + Math.abs(v - y[i]), 0) / x.length;
    expect(mae / 0.02).toBeLessThan(0.1);
    expect((8 * nf4Bytes(q)) / x.length).toBeLessThan(4.2);
    // NF4 fits normal weights better than uniform 4-bit levels over the same blocks.
    let nfErr = 0,
      uniErr = 0;
    for (let i = 0; i < x.length; i++) {
      const s = scales[Math.floor(i / 64)];
      const u = (Math.round(((x[i] / s + 1) / 2) * 15) / 15) * 2 - 1;
      nfErr += (x[i] - y[i]) ** 2;
      uniErr += (x[i] - u * s) ** 2;
    }
    expect(nfErr).toBeLessThan(0.9 * uniErr); // measured: 17% lower
  });
});

describe('QLoRA', () => {
  it('quantizes the base about 7.7x, trains only adapters over it, and merges to the same outputs', async () => {
    await initEngine();
    const lm = await loadModel(STORIES);
    const full = await logits(lm);
    const mem = lm.model.holdLinearsAsNF4();
    expect(lm.model.quantized.size).toBe(5 * 7);
    expect(mem.float32Bytes / mem.nf4Bytes).toBeGreaterThan(7.5);
    const quant = await logits(lm);
    const rel = Math.sqrt(quant.reduce((a, v, i) => a + (v - full[i]) ** 2, 0) / full.reduce((a, v) => a + v * v, 0));
    expect(rel).toBeGreaterThan(0);
    expect(rel).toBeLessThan(0.3); // 4-bit weights move this tiny model's logits by ~0.22 (relative RMS)
    addLora(lm.model, { rank: 4, targets: ['all-linear'] });
    expect(await logits(lm)).toEqual(quant);
    dropLora(lm.model);

    const data = `${SHARED_DATA}/sft_samples/dolly_hhrlhf_train_small.jsonl`;
    const r = await train(lm, {
      datasets: [data],
      stage: 'sft',
      maxLength: 128,
      batchSize: 2,
      maxSteps: 4,
      lr: 1e-2,
      valSize: 8,
      evalEvery: 4,
      qlora: true,
      lora: { rank: 4, targets: ['all-linear'] },
    });
    expect(r.quantization).toEqual({ float32Bytes: 0, nf4Bytes: 0 }); // already quantized above
    expect(r.evalLosses[1].loss).toBeLessThan(r.evalLosses[0].loss);
    const adapted = await logits(lm);
    mergeLora(lm.model);
    expect(lm.model.quantized.size).toBe(0);
    const merged = await logits(lm);
    expect(Math.max(...merged.map((v, i) => Math.abs(v - adapted[i])))).toBeLessThan(1e-4);
  });

  it('the trainer reports the memory QLoRA saves', async () => {
    const lm = await loadModel(STORIES);
    const data = `${SHARED_DATA}/sft_samples/dolly_hhrlhf_train_small.jsonl`;
    const r = await train(lm, {
      datasets: [data],
      stage: 'sft',
      maxLength: 128,
      batchSize: 2,
      maxSteps: 1,
      valSize: 0,
      qlora: true,
      lora: { rank: 2 },
    });
    expect(r.quantization!.float32Bytes).toBe(4 * 5 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 172));
    await expect(train(await loadModel(STORIES), { datasets: [data], maxSteps: 1, qlora: true })).rejects.toThrow(
      /QLoRA trains LoRA adapters/,
    );
  });

  it("loads a model with NF4 linears for inference: QLoRA's base exactly, close to float; full training refused", async () => {
    const [float, nf4, qloraBase] = [
      await loadModel(STORIES),
      await loadModel(STORIES, { quantize: 'nf4' }),
      await loadModel(STORIES),
    ];
    qloraBase.model.holdLinearsAsNF4();
    const linears = [...nf4.model.quantized.keys()];
    expect(linears).toHaveLength(5 * 7); // every projection of the 5 blocks; embeddings, norms and head stay float
    expect(linears.every((k) => !nf4.model.params.has(k) && float.model.params.has(k))).toBe(true);
    expect(nf4.model.numParameters()).toBe(float.model.numParameters());
    expect(nf4.model.weightBytes()).toBe(qloraBase.model.weightBytes());
    expect(nf4.model.weightBytes()).toBeLessThan(0.45 * float.model.weightBytes());
    const [f, q, b] = [await logits(float), await logits(nf4), await logits(qloraBase)];
    expect(q).toEqual(b);
    expect(q).not.toEqual(f); // it is not the float model
    // NF4 rounding moves this tiny model's logits (up to a few nats), but at each of the 5 positions the most likely token is the float model's.
    const V = float.model.config.vocabSize;
    const argmaxes = (x: number[]) =>
      Array.from({ length: x.length / V }, (_, t) => {
        const row = x.slice(t * V, (t + 1) * V);
        return row.indexOf(Math.max(...row));
      });
    expect(argmaxes(q)).toEqual(argmaxes(f));
    const data = `${SHARED_DATA}/sft_samples/dolly_hhrlhf_train_small.jsonl`;
    await expect(train(nf4, { datasets: [data], maxSteps: 1 })).rejects.toThrow(/train only through LoRA/);
    const pairs = { datasets: [`${SHARED_DATA}/hh_rlhf/harmless-base_test.jsonl`], maxSteps: 1 };
    await expect(trainPreference(nf4, pairs)).rejects.toThrow(/train only through LoRA/);
    await expect(trainReward(nf4, pairs)).rejects.toThrow(/train only through LoRA/);
    for (const m of [float, nf4, qloraBase]) m.model.dispose();
  });
});
