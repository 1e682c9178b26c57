import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { LocalLM } from '../lib/eval/local.js';
import type { LoglikelihoodRequest } from '../lib/eval/lm.js';
import { PrefixCache } from '../lib/eval/prefix-cache.js';
import { initEngine } from '../lib/engine/index.js';
import { seededRandom } from '../lib/util/random.js';
import { leftPad } from '../lib/models/llama.js';
import { KVCache } from '../lib/models/kv-cache.js';
import { loadModel, randomModel, type LoadedModel } from '../lib/models/load.js';
import { STORIES, TINY_CONFIGS } from './helpers/models.js';

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('forward over a shared encoded prefix', () => {
  beforeAll(async () => {
    await initEngine();
  });

  for (const [name, cfg] of Object.entries(TINY_CONFIGS)) {
    it(`${name}: rows continued from a prefix equal the whole sequences run from scratch`, () => {
      const model = randomModel(cfg, { seed: 5, std: 0.2 });
      const rand = seededRandom(9);
      const V = cfg.vocab_size as number;
      const tok = () => 3 + Math.floor(rand() * (V - 3));
      const prefix = Array.from({ length: 9 }, tok);
      const suffixes = [2, 5, 1].map((n) => Array.from({ length: n }, tok));
      const collect = { keys: [] as tf.Tensor4D[], values: [] as tf.Tensor4D[] };
      model.forward([prefix], { collect }).dispose();
      const past = { length: prefix.length, keys: collect.keys, values: collect.values };
      const { ids, mask } = leftPad(suffixes);
      const cached = model.forward(ids, { attentionMask: mask, past });
      const got = cached.arraySync();
      suffixes.forEach((s, b) => {
        const full = model.forward([[...prefix, ...s]]);
        const want = full.arraySync()[0].slice(-s.length);
        full.dispose();
        expect(maxDiff(got[b].slice(-s.length).flat(), want.flat())).toBeLessThan(1e-5);
      });
      cached.dispose();
      for (const t of [...collect.keys, ...collect.values]) t.dispose();
    });
  }
});

describe('long prompts', () => {
  it('attention in query blocks (T=600) equals the same sequence fed through the KV cache in short chunks', async () => {
    await initEngine();
    const cfg = { ...TINY_CONFIGS['llama GQA + llama3 rope, untied'], max_position_embeddings: 1024 };
    const model = randomModel(cfg, { seed: 8, std: 0.2 });
    const rand = seededRandom(4);
    const ids = Array.from({ length: 600 }, () => 3 + Math.floor(rand() * 50));
    const whole = model.forward([ids]);
    const want = whole.arraySync()[0];
    whole.dispose();
    const cache = new KVCache(model.config, 1, 600);
    const got: number[][] = [];
    for (let at = 0; at < 600; at += 100) {
      const h = model.forward([ids.slice(at, at + 100)], { cache });
      got.push(...h.arraySync()[0]);
      h.dispose();
    }
    cache.dispose();
    expect(maxDiff(got.flat(), want.flat())).toBeLessThan(1e-4);
  });
});

describe('prefix cache on stories260K', () => {
  let lm: LoadedModel;
  beforeAll(async () => {
    lm = await loadModel(STORIES);
  });

  const words = [
    'Once',
    'upon',
    'a',
    'time',
    'Lily',
    'Tom',
    'dog',
    'went',
    'to',
    'the',
    'park',
    'happy',
    'and',
    'saw',
    'big',
    'red',
    'ball',
    'Lil',
    'y',
    '.',
    ',',
  ];
  function phrase(rand: () => number, n: number): string {
    return Array.from({ length: n }, () => words[Math.floor(rand() * words.length)]).join(rand() < 0.3 ? '' : ' ');
  }

  /** Random request sets: shared few-shot prefixes, shared contexts with several options, unshared ones, and contexts whose end merges with the continuation. */
  function requestSet(seed: number): LoglikelihoodRequest[] {
    const rand = seededRandom(seed);
    const shared = [phrase(rand, 12) + '\n\n', phrase(rand, 20) + '\n\n'];
    const reqs: LoglikelihoodRequest[] = [];
    for (let i = 0; i < 14; i++) {
      const head = rand() < 0.7 ? shared[Math.floor(rand() * 2)] : '';
      const context = head + phrase(rand, 2 + Math.floor(rand() * 10)) + (rand() < 0.2 ? ' ' : '');
      const options = 1 + Math.floor(rand() * 4);
      for (let j = 0; j < options; j++)
        reqs.push({ context, continuation: (rand() < 0.5 ? ' ' : '') + phrase(rand, 1 + Math.floor(rand() * 4)) });
    }
    return reqs;
  }

  for (const [label, budgetBytes] of [
    ['roomy budget', 64 * 2 ** 20],
    ['budget of ~40 tokens (forces eviction)', 50_000],
  ] as const) {
    // Float32 noise alone moves sums of ~70 nats by ~2e-5 between batch sizes of the uncached path,
    // so the bound is relative: 1e-5 of the log-likelihood (at least 1e-5 absolute).
    it(`scores equal the uncached ones within 1e-5 (relative) with identical greedy flags (${label}, batch sizes 1/3/8)`, async () => {
      for (const seed of [1, 2, 3]) {
        const reqs = requestSet(seed);
        const want = await new LocalLM(lm, { batchSize: 4, prefixCache: false }).loglikelihood(reqs);
        for (const batchSize of [1, 3, 8]) {
          const cached = new LocalLM(lm, { batchSize, prefixCache: { budgetBytes } });
          const got = await cached.loglikelihood(reqs);
          got.forEach((g, i) => {
            expect(Math.abs(g.logprob - want[i].logprob)).toBeLessThan(1e-5 * Math.max(1, Math.abs(want[i].logprob)));
            expect(g.isGreedy).toBe(want[i].isGreedy);
            expect(g.tokens).toBe(want[i].tokens);
          });
          const stats = cached.prefixCache!.stats;
          expect(stats.reusedTokens).toBeGreaterThan(0);
          if (budgetBytes < 2 ** 20) {
            expect(stats.evictions).toBeGreaterThan(0);
            expect(stats.bytes).toBeLessThanOrEqual(budgetBytes);
          }
          cached.prefixCache!.clear();
        }
      }
    });
  }

  it('encodes a shared few-shot prefix once: reused tokens grow with each instance', async () => {
    const local = new LocalLM(lm, { batchSize: 4 });
    const shots = 'Lily went to the park. She saw a big red ball.\n\nTom went to the park. He saw a dog.\n\n';
    const reqs = ['Lily', 'Tom', 'The dog'].flatMap((q) =>
      [' happy', ' sad'].map((c) => ({ context: shots + q + ' was', continuation: c })),
    );
    await local.loglikelihood(reqs);
    const { reusedTokens, computedTokens } = local.prefixCache!.stats;
    const shotTokens = local.encode(shots.trimEnd()).length;
    // Three contexts: the shots are encoded for the first only; later ones reuse them.
    expect(reusedTokens).toBeGreaterThanOrEqual(2 * shotTokens);
    expect(computedTokens).toBeLessThan(shotTokens + 3 * 8);
  });

  it('batched generation from a cached prefix equals one-by-one generation from scratch', async () => {
    const shots = 'Once upon a time, there was a little girl named Lily.\n\n';
    const reqs = ['Tom had a', 'The dog was very', 'Lily went', 'One day'].map((q) => ({
      context: shots + q,
      until: ['\n'],
      maxNewTokens: 12,
    }));
    const plain = await new LocalLM(lm, { prefixCache: false, batchSize: 1 }).generateUntil(reqs);
    expect(await new LocalLM(lm, { prefixCache: false, batchSize: 3 }).generateUntil(reqs)).toEqual(plain);
    const cached = new LocalLM(lm, { batchSize: 3 });
    expect(await cached.generateUntil(reqs)).toEqual(plain);
    expect(cached.prefixCache!.stats.reusedTokens).toBeGreaterThan(0);
  });

  it('keeps pinned prefixes while their request is in flight, and splits edges under holders safely', () => {
    const cache = new PrefixCache(lm.model, { budgetBytes: 1 });
    const a = cache.acquire([1, 400, 401, 402, 403]);
    expect(cache.stats.nodes).toBe(1);
    // Matching inside the pinned edge splits it; the tiny budget cannot evict either pinned half.
    const b = cache.acquire([1, 400, 401, 99]);
    expect(cache.stats.nodes).toBe(3);
    expect(cache.stats.reusedTokens).toBe(3);
    expect(a.past!.length).toBe(5);
    expect(b.past!.length).toBe(4);
    a.release();
    // a's tail is now unpinned and evicted; b's path stays.
    expect(cache.stats.nodes).toBe(2);
    b.release();
    expect(cache.stats.nodes).toBe(0);
    expect(cache.stats.bytes).toBe(0);
  });
});
