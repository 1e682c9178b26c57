import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { beamSearch } from '../lib/models/beam.js';
import { generate } from '../lib/models/generate.js';
import { leftPad } from '../lib/models/llama.js';
import { loadModel, type LoadedModel } from '../lib/models/load.js';
import { nextTokenLogprobs } from '../lib/models/score.js';
import { STORIES } from './helpers/models.js';

describe('beam search', () => {
  let lm: LoadedModel;
  const prompt = [1, 403, 407, 261];
  beforeAll(async () => {
    lm = await loadModel(STORIES);
  });

  it('one beam is greedy decoding', async () => {
    const greedy = (await generate(lm, [prompt], { maxNewTokens: 20 }))[0];
    const beam = await beamSearch(lm, prompt, { numBeams: 1, maxNewTokens: 20, stopIds: new Set([2, 1]) });
    expect(beam.ids).toEqual(greedy.ids);
    expect(beam.text).toBe(greedy.text);
  });

  it('with as many beams as tokens, two steps find the most likely pair found by exhaustive search', async () => {
    const V = lm.model.config.vocabSize;
    const beam = await beamSearch(lm, prompt, { numBeams: V, lengthPenalty: 0, maxNewTokens: 2, stopIds: new Set() });
    // Exhaustive: log p(a) + max_b log p(b | a) over every first token a, by plain forward passes.
    const first = tf.tidy(() =>
      tf
        .logSoftmax(
          lm.model.logits(
            lm.model
              .forward([prompt])
              .reshape([prompt.length, -1])
              .slice([prompt.length - 1, 0], [1, -1]) as tf.Tensor2D,
          ),
        )
        .dataSync(),
    );
    const { ids } = leftPad(Array.from({ length: V }, (_, a) => [...prompt, a]));
    const second = tf.tidy(() => {
      const h = lm.model.forward(ids);
      const last = h.slice([0, prompt.length, 0], [V, 1, -1]).reshape([V, -1]) as tf.Tensor2D;
      return tf.logSoftmax(lm.model.logits(last)).dataSync();
    });
    let best = -Infinity,
      pair = [0, 0];
    for (let a = 0; a < V; a++) {
      for (let b = 0; b < V; b++) {
        const s = first[a] + second[a * V + b];
        if (s > best) [best, pair] = [s, [a, b]];
      }
    }
    expect(beam.ids).toEqual(pair);
    expect(Math.abs(beam.score - best)).toBeLessThan(1e-4);
    const check = (await nextTokenLogprobs(lm.model, [...prompt, ...pair])).slice(-2);
    expect(Math.abs(check[0] + check[1] - best)).toBeLessThan(1e-4);
  });

  it('scores at least as high as greedy on sequence log-likelihood, and length_penalty follows its definition', async () => {
    const stopIds = new Set([2, 1]);
    const sum = async (ids: number[]) =>
      (await nextTokenLogprobs(lm.model, [...prompt, ...ids])).slice(-ids.length).reduce((a, b) => a + b, 0);
    const greedy = await beamSearch(lm, prompt, { numBeams: 1, lengthPenalty: 0, maxNewTokens: 12, stopIds });
    const beams = await beamSearch(lm, prompt, { numBeams: 4, lengthPenalty: 0, maxNewTokens: 12, stopIds });
    // Up to float32 rounding: 4 beams run as a batch of 4, greedy as a batch of 1 (different BLAS paths).
    expect(beams.score).toBeGreaterThanOrEqual(greedy.score - 1e-5);
    expect(Math.abs(beams.score - (await sum(beams.ids)))).toBeLessThan(1e-3);
    const long = await beamSearch(lm, prompt, { numBeams: 4, lengthPenalty: 2, maxNewTokens: 12, stopIds });
    expect(Math.abs(long.score - (await sum(long.ids)) / long.ids.length ** 2)).toBeLessThan(1e-4);
    await expect(generate(lm, [prompt], { numBeams: 2, temperature: 0.7 })).rejects.toThrow(/takes no temperature/);
    expect((await generate(lm, [prompt], { numBeams: 4, lengthPenalty: 0, maxNewTokens: 12 }))[0].ids).toEqual(
      beams.ids,
    );
  });
});
