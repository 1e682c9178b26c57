import { describe, expect, it } from 'vitest';
import { initEngine, tf } from '../lib/engine/index.js';
import { KVCache } from '../lib/models/kv-cache.js';
import { LlamaModel } from '../lib/models/llama.js';
import { generate } from '../lib/models/generate.js';
import { loadModel, randomModel, saveModel } from '../lib/models/load.js';
import { readModelWeights } from '../lib/models/safetensors.js';
import { TINY_CONFIGS, tmp } from './helpers/models.js';
import { referenceLogits } from './helpers/reference-forward.js';

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Logits [T, V] of one sequence, computed without cache or padding. */
function logitsOf(model: LlamaModel, ids: number[]): Float32Array {
  return tf.tidy(() => {
    const h = model.forward([ids]);
    return model.logits(h.reshape([ids.length, model.config.hiddenSize]) as tf.Tensor2D).dataSync() as Float32Array;
  });
}

function randomIds(n: number, vocab: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => (s = (s * 1103515245 + 12345) % 2 ** 31) % vocab);
}

describe.each(Object.entries(TINY_CONFIGS))('%s', (_name, cfgJson) => {
  it('matches an independent float64 reference forward written from the Hugging Face modeling code', async () => {
    await initEngine();
    const model = randomModel(cfgJson, { seed: 7, std: 0.2 });
    // Norm weights away from 1, so that a norm applied to the wrong axis (or not at all) shows.
    for (const [name, t] of model.params) {
      if (name.endsWith('norm.weight'))
        model.params.set(name, tf.keep(tf.add(t, tf.randomUniform(t.shape, -0.5, 0.5, 'float32', 5))));
    }
    const ids = randomIds(model.config.slidingWindow ? 14 : 10, model.config.vocabSize, 17);
    const ref = referenceLogits(model.config, model.toRaw(), ids);
    const ours = logitsOf(model, ids);
    expect(maxAbsDiff(ours, ref)).toBeLessThan(2e-4 * Math.max(1, ...Array.from(ref, Math.abs)));
    model.dispose();
  });

  it('saves and reloads to identical parameters and logits', async () => {
    await initEngine();
    const model = randomModel(cfgJson, { seed: 3, std: 0.2 });
    const dir = tmp();
    saveModel(dir, model);
    const back = await loadModel(dir);
    expect(back.model.config).toEqual(model.config);
    expect([...back.model.params.keys()].sort()).toEqual([...model.params.keys()].sort());
    for (const [name, t] of model.params)
      expect(maxAbsDiff(back.model.params.get(name)!.dataSync(), t.dataSync())).toBe(0);
    const ids = randomIds(12, model.config.vocabSize, 5);
    expect(maxAbsDiff(logitsOf(back.model, ids), logitsOf(model, ids))).toBe(0);
    model.dispose();
    back.model.dispose();
  });

  it('gives the same logits with the KV cache, fed in uneven chunks, as without', async () => {
    await initEngine();
    const model = randomModel(cfgJson, { seed: 11, std: 0.2 });
    const ids = randomIds(17, model.config.vocabSize, 9);
    const full = logitsOf(model, ids);
    const cache = new KVCache(model.config, 1, 24);
    const parts: number[] = [];
    let at = 0;
    for (const n of [5, 1, 1, 7, 3]) {
      const chunk = ids.slice(at, at + n);
      parts.push(
        ...tf.tidy(() =>
          model
            .logits(model.forward([chunk], { cache }).reshape([n, model.config.hiddenSize]) as tf.Tensor2D)
            .dataSync(),
        ),
      );
      at += n;
    }
    cache.dispose();
    // Float32 rounding of products of other shapes, relative to the logits' size (BLAS kernels differ
    // by CPU: with AVX-512 OpenBLAS, logits of at most 6.8 moved by up to 1.2e-5); a cache fault moves them by 0.1.
    expect(maxAbsDiff(parts, full)).toBeLessThan(5e-6 * Math.max(1, ...Array.from(full, Math.abs)));
    model.dispose();
  });

  it('gives each row of a left-padded batch the logits it gets alone', async () => {
    await initEngine();
    const model = randomModel(cfgJson, { seed: 21, std: 0.2 });
    const V = model.config.vocabSize;
    const seqs = [randomIds(9, V, 1), randomIds(4, V, 2), randomIds(7, V, 3)];
    const T = 9;
    const ids = seqs.map((s) => [...new Array(T - s.length).fill(0), ...s]);
    const mask = seqs.map((s) => ids[0].map((_, t) => (t >= T - s.length ? 1 : 0)));
    const batched = tf.tidy(() =>
      model
        .logits(model.forward(ids, { attentionMask: mask }).reshape([3 * T, model.config.hiddenSize]) as tf.Tensor2D)
        .dataSync(),
    );
    seqs.forEach((s, b) => {
      const alone = logitsOf(model, s);
      const rows = batched.slice((b * T + T - s.length) * V, (b + 1) * T * V);
      expect(maxAbsDiff(rows, alone)).toBeLessThan(1e-5);
    });
    model.dispose();
  });

  it('generates the same greedy ids batched, single, cached and uncached', async () => {
    await initEngine();
    const model = randomModel(cfgJson, { seed: 5, std: 0.3 });
    const lm = { dir: '', model, tokenizer: null, generation: { eosTokenIds: [] } };
    const prompts = [randomIds(6, model.config.vocabSize, 4), randomIds(2, model.config.vocabSize, 8)];
    const opts = { maxNewTokens: 12, stopAtBos: false };
    const batched = await generate(lm, prompts, opts);
    for (const [i, p] of prompts.entries()) {
      expect((await generate(lm, [p], opts))[0].ids).toEqual(batched[i].ids);
      expect((await generate(lm, [p], { ...opts, useCache: false }))[0].ids).toEqual(batched[i].ids);
    }
    expect(batched[0].ids).toHaveLength(12);
    model.dispose();
  });
});

describe('sliding window', () => {
  it('changes logits only beyond the window', async () => {
    await initEngine();
    const cfg = TINY_CONFIGS['mistral sliding window 5'];
    const windowed = randomModel(cfg, { seed: 1, std: 0.3 });
    const full = randomModel({ ...cfg, sliding_window: null }, { seed: 1, std: 0.3 });
    const ids = randomIds(10, 40, 3);
    const a = logitsOf(windowed, ids),
      b = logitsOf(full, ids);
    expect(maxAbsDiff(a.slice(0, 5 * 40), b.slice(0, 5 * 40))).toBeLessThan(1e-6);
    expect(maxAbsDiff(a.slice(5 * 40), b.slice(5 * 40))).toBeGreaterThan(1e-3);
    windowed.dispose();
    full.dispose();
  });
});

describe('checkpoint layouts', () => {
  it('Phi-3 keeps its fused projections on disk: qkv_proj and gate_up_proj, as the Hugging Face checkpoint has them', async () => {
    await initEngine();
    const model = randomModel(TINY_CONFIGS['phi3 fused qkv and gate_up, sliding window 6'], { seed: 2 });
    const dir = tmp();
    saveModel(dir, model);
    const names = [...readModelWeights(dir).keys()];
    expect(names).toContain('model.layers.0.self_attn.qkv_proj.weight');
    expect(names).toContain('model.layers.1.mlp.gate_up_proj.weight');
    expect(names.some((n) => /\.(q|k|v)_proj\.|gate_proj|\.up_proj/.test(n))).toBe(false);
    expect(readModelWeights(dir).get('model.layers.0.self_attn.qkv_proj.weight')!.shape).toEqual([32 + 2 * 16, 32]);
    model.dispose();
  });
});
