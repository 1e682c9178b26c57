// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { llm } from '../lib/llm.js';
import { loadModel } from '../lib/models/load.js';
import { nextTokenLogprobs } from '../lib/models/score.js';
import { loadModelOrAdapter } from '../lib/train/adapted.js';
import { train } from '../lib/train/trainer.js';
import { serve } from '../lib/serve/server.js';
import { runCli } from './helpers/http.js';
import { SHARED_DATA, STORIES, tmp } from './helpers/models.js';

const BIN = fileURLToPath(new URL('../bin/llmbox.js', import.meta.url));
const SFT = join(SHARED_DATA, 'sft_samples/dolly_hhrlhf_train_small.jsonl');
const IDS = [1, 403, 407, 261, 378, 432, 383, 286];
const maxDiff = (a: number[], b: number[]) => Math.max(...a.map((x, i) => Math.abs(x - b[i])));

/** A LoRA adapter used wherever a model is: -m BASE --adapter DIR, or -m DIR for a PEFT folder naming its base. */
describe('LoRA adapters wherever a model is', () => {
  let out: string;
  let trained: number[];
  let base: number[];
  beforeAll(async () => {
    const lm = await loadModel(STORIES);
    base = await nextTokenLogprobs(lm.model, IDS);
    out = tmp();
    process.env.LLMBOX_CACHE_DIR = tmp();
    await train(lm, {
      datasets: [SFT],
      stage: 'sft',
      maxLength: 128,
      batchSize: 2,
      maxSteps: 4,
      lr: 1e-2,
      seed: 3,
      lora: { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj'] },
      output: out,
    });
    trained = await nextTokenLogprobs(lm.model, IDS);
  });

  it('loads as the trained (unmerged) model scores, given with its base or finding the base itself', async () => {
    expect(maxDiff(trained, base)).toBeGreaterThan(1e-3);
    const withBase = await loadModelOrAdapter(STORIES, out);
    expect(maxDiff(await nextTokenLogprobs(withBase.model, IDS), trained)).toBeLessThan(1e-4);
    expect(withBase.name).toMatch(/^stories260K\+/);
    const alone = await loadModelOrAdapter(out, undefined);
    expect(maxDiff(await nextTokenLogprobs(alone.model, IDS), trained)).toBeLessThan(1e-4);
    await expect(loadModelOrAdapter(STORIES, STORIES)).rejects.toThrow(/adapter_config.json is missing/);
  });

  it('eval, generate, serve and the fluent API take the adapter', async () => {
    const withFlag = await runCli(BIN, [
      'eval',
      '-m',
      STORIES,
      '--adapter',
      out,
      '-d',
      'arc_easy',
      '--limit',
      '6',
      '--json',
    ]);
    const asFolder = await runCli(BIN, ['eval', '-m', out, '-d', 'arc_easy', '--limit', '6', '--json']);
    const plain = await runCli(BIN, ['eval', '-m', STORIES, '-d', 'arc_easy', '--limit', '6', '--json']);
    expect(withFlag.code, withFlag.stderr).toBe(0);
    const [a, b, c] = [withFlag, asFolder, plain].map((r) => JSON.parse(r.stdout));
    expect(a.results).toEqual(b.results);
    expect(a.fingerprint.model_hash).toBe(b.fingerprint.model_hash);
    expect(a.fingerprint.model_hash).not.toBe(c.fingerprint.model_hash);
    const gen = await runCli(BIN, [
      'generate',
      '-m',
      STORIES,
      '--adapter',
      out,
      '-p',
      'Once upon a time',
      '--max-new-tokens',
      '12',
      '--json',
    ]);
    const lm = await loadModelOrAdapter(STORIES, out);
    const fluent = await llm.load(STORIES, { adapter: out }).generate('Once upon a time', { maxNewTokens: 12 });
    expect(JSON.parse(gen.stdout).text).toBe(fluent.texts[0]);
    const server = await serve(lm, { port: 0 });
    try {
      expect((await (await fetch(`${server.url}/models`)).json()).data[0].id).toBe(lm.name);
      const sc = await llm.load(STORIES, { adapter: out }).score('Tom had a red', [' ball', ' sky']);
      const remote = await llm
        .load(`${server.url}::${lm.name}`, { requestCache: false })
        .score('Tom had a red', [' ball', ' sky']);
      remote.options.forEach((o, i) => expect(Math.abs(o.logprob - sc.options[i].logprob)).toBeLessThan(1e-5));
    } finally {
      await server.close();
    }
  });
});
