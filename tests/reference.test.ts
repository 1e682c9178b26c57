import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../lib/engine/index.js';
import { generate } from '../lib/models/generate.js';
import { LlamaModel } from '../lib/models/llama.js';
import { loadModel, type LoadedModel } from '../lib/models/load.js';
import { nextTokenLogprobs } from '../lib/models/score.js';
import { STORIES } from './helpers/models.js';

// Outputs of llama2.c's C forward pass on the original checkpoint (see PROVENANCE.md beside it).
interface Reference {
  greedy: { prompt: string; prompt_ids: number[]; continuation_ids: number[]; continuation_text: string }[];
  teacher_forcing: {
    source_text: string;
    ids: number[];
    last_position_logits: number[];
    last_position_argmax: number;
    next_token_logprobs: number[];
    sum_next_token_logprob: number;
  }[];
}
const ref: Reference = JSON.parse(readFileSync(`${STORIES}/REFERENCE.json`, 'utf8'));

describe('stories260K against llama2.c', () => {
  let lm: LoadedModel;
  beforeAll(async () => {
    lm = await loadModel(STORIES);
  });

  it('tokenizes prompts to the reference ids', () => {
    for (const g of ref.greedy) expect(lm.tokenizer!.encode(g.prompt)).toEqual(g.prompt_ids);
    const tfc = ref.teacher_forcing[0];
    expect(lm.tokenizer!.encode(tfc.source_text).slice(0, tfc.ids.length)).toEqual(tfc.ids);
  });

  it('reproduces the last-position logits row within 1e-4', () => {
    const tfc = ref.teacher_forcing[0];
    const logits = tf.tidy(() => {
      const h = lm.model.forward([tfc.ids]);
      return lm.model.logits(LlamaModel.pickRows(h, [tfc.ids.length - 1])).dataSync();
    });
    expect(logits.length).toBe(512);
    let maxDiff = 0;
    logits.forEach((x, i) => (maxDiff = Math.max(maxDiff, Math.abs(x - tfc.last_position_logits[i]))));
    expect(maxDiff).toBeLessThan(1e-4);
    let arg = 0;
    logits.forEach((x, i) => (arg = x > logits[arg] ? i : arg));
    expect(arg).toBe(tfc.last_position_argmax);
  });

  it('reproduces every teacher-forced next-token log-probability within 1e-4', async () => {
    const tfc = ref.teacher_forcing[0];
    const lp = await nextTokenLogprobs(lm.model, tfc.ids);
    expect(lp).toHaveLength(tfc.next_token_logprobs.length);
    lp.forEach((x, i) => expect(Math.abs(x - tfc.next_token_logprobs[i])).toBeLessThan(1e-4));
    expect(Math.abs(lp.reduce((a, b) => a + b, 0) - tfc.sum_next_token_logprob)).toBeLessThan(1e-3);
  });

  it('produces identical greedy continuations, with and without the KV cache', async () => {
    for (const g of ref.greedy) {
      for (const useCache of [true, false]) {
        const [r] = await generate(lm, [g.prompt], {
          maxNewTokens: g.continuation_ids.length,
          stopIds: [],
          stopAtBos: false,
          useCache,
        });
        expect(r.promptIds).toEqual(g.prompt_ids);
        expect(r.ids).toEqual(g.continuation_ids);
        expect(r.text).toBe(g.continuation_text);
      }
    }
  });

  it('generates the same greedy ids for a batch of prompts of different lengths', async () => {
    const rs = await generate(
      lm,
      ref.greedy.map((g) => g.prompt),
      { maxNewTokens: 64, stopIds: [], stopAtBos: false },
    );
    rs.forEach((r, i) => expect(r.ids).toEqual(ref.greedy[i].continuation_ids));
  });

  it('stops at BOS (the end of a story) by default and on stop strings', async () => {
    const [r] = await generate(lm, ['Once upon a time'], { maxNewTokens: 400 });
    expect(r.finishReason).toBe('stop');
    expect(r.ids[r.ids.length - 1]).toBe(1);
    expect(r.ids.slice(0, -1)).not.toContain(1);
    const [s] = await generate(lm, ['Once upon a time'], { maxNewTokens: 64, stop: ['Lily'] });
    expect(s.text).toBe(', there was a little girl named ');
    expect(s.finishReason).toBe('stop');
  });

  it('samples reproducibly from a seed', async () => {
    const opts = { maxNewTokens: 24, temperature: 1, topP: 0.9, topK: 40, seed: 7 };
    const a = (await generate(lm, ['Once upon a time'], opts))[0];
    const b = (await generate(lm, ['Once upon a time'], opts))[0];
    const c = (await generate(lm, ['Once upon a time'], { ...opts, seed: 8 }))[0];
    expect(a.ids).toEqual(b.ids);
    expect(a.ids).not.toEqual(c.ids);
  });
});
