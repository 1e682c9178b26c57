// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tf } from '../lib/engine/index.js';
import { loadModel } from '../lib/models/load.js';
import { mergeTokenizer } from '../lib/train/vocab.js';
import { SHARED_DATA, STORIES, tmp } from './helpers/models.js';

const CORPUS = join(SHARED_DATA, 'pretrain_text/tinyshakespeare.txt');

describe('vocabulary expansion (merge-tokenizer)', () => {
  it('adds learned BPE tokens after the old ones, keeps old ids, and initialises new embedding rows to the mean', async () => {
    const base = await loadModel(STORIES);
    const out = tmp();
    const r = mergeTokenizer(base, [CORPUS], 32, out);
    expect(r.added.map((a) => a.id)).toEqual(Array.from({ length: 32 }, (_, i) => 512 + i));
    expect(r.newVocab).toBe(544);
    expect(r.tokensAfter).toBeLessThan(r.tokensBefore * 0.95);
    // Merge counts never increase: each pick is the most frequent pair left.
    r.added.slice(1).forEach((a, i) => expect(a.count).toBeLessThanOrEqual(r.added[i].count));

    const grown = await loadModel(out);
    const oldTok = base.tokenizer!,
      newTok = grown.tokenizer!;
    for (let id = 0; id < 512; id++) expect(newTok.idToToken(id)).toBe(oldTok.idToToken(id));
    const old = JSON.parse(readFileSync(join(STORIES, 'tokenizer.json'), 'utf8')).model.merges.length;
    expect(JSON.parse(readFileSync(join(out, 'tokenizer.json'), 'utf8')).model.merges.length).toBe(old + 32);
    const line = 'First Citizen: Before we proceed any further, hear me speak.';
    const ids = newTok.encode(line, { addSpecialTokens: false });
    expect(ids.some((id) => id >= 512)).toBe(true);
    expect(newTok.decode(ids)).toBe(line);

    const embOld = base.model.params.get('model.embed_tokens.weight')!,
      embNew = grown.model.params.get('model.embed_tokens.weight')!;
    expect(embNew.shape).toEqual([544, 64]);
    const same = tf.tidy(() => tf.max(tf.abs(tf.sub(embNew.slice([0, 0], [512, 64]), embOld))).dataSync()[0]);
    expect(same).toBe(0);
    const meanDiff = tf.tidy(
      () => tf.max(tf.abs(tf.sub(embNew.slice([530, 0], [1, 64]), tf.mean(embOld, 0, true)))).dataSync()[0],
    );
    expect(meanDiff).toBeLessThan(1e-6);
    // Text of old tokens: the old logits are unchanged (tied head), the new ones are appended.
    const seq = [1, 403, 407, 261];
    const logits = (lm: typeof base) =>
      tf.tidy(() => lm.model.logits(lm.model.forward([seq]).reshape([4, 64]) as tf.Tensor2D).arraySync()) as number[][];
    const a = logits(base),
      b = logits(grown);
    b.forEach((row, t) => {
      expect(row.length).toBe(544);
      row.slice(0, 512).forEach((v, j) => expect(Math.abs(v - a[t][j])).toBeLessThan(1e-4));
    });
  });
});
