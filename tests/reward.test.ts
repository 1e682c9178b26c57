import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { llm } from '../lib/llm.js';
import { loadModel } from '../lib/models/load.js';
import { parseConfig } from '../lib/models/config.js';
import { toBatch } from '../lib/train/batches.js';
import { pairRows } from '../lib/train/pairs.js';
import { addRewardHead, rewardsOf, segmentRewards, trainReward } from '../lib/train/reward.js';
import { STORIES, llmboxErrorOf, tmp } from './helpers/models.js';

function pairsFile(n: number): string {
  const dir = tmp('llmbox-rm-');
  const rows = Array.from({ length: n }, (_, i) => ({
    prompt: `Tell me a story number ${i}.`,
    chosen: 'Once upon a time, there was a little girl.',
    rejected: 'qqq zzz xxj kkk.',
  }));
  const file = join(dir, 'pairs.jsonl');
  writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return file;
}

describe('reward model', () => {
  const bin = fileURLToPath(new URL('../bin/llmbox.js', import.meta.url));

  it('learns to score chosen above rejected, saves as LlamaForSequenceClassification and scores the same after loading', async () => {
    const file = pairsFile(40);
    const out = join(tmp('llmbox-rm-out-'), 'rm');
    const loaded = await loadModel(STORIES);
    const r = await trainReward(loaded, {
      datasets: [file],
      maxLength: 96,
      batchSize: 4,
      maxSteps: 15,
      lr: 5e-3,
      valSize: 8,
      lora: { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj'] },
      output: out,
    });
    expect(r.evals.at(-1)!.accuracy).toBe(1);
    expect(r.evals.at(-1)!.margin).toBeGreaterThan(r.evals[0].margin);
    // LoRA adapters and the head train; the head is one column
    expect(r.parameters.trainable).toBeLessThan(r.parameters.total / 5);
    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(cfg).toMatchObject({ architectures: ['LlamaForSequenceClassification'], num_labels: 1 });
    const items = [
      { prompt: [{ role: 'user' as const, content: 'Tell me a story.' }], response: 'Once upon a time.' },
      { prompt: [{ role: 'user' as const, content: 'Tell me a story.' }], response: 'qqq zzz.' },
    ];
    const before = await rewardsOf(loaded, items);
    const reloaded = await loadModel(out);
    expect(reloaded.model.config.numLabels).toBe(1);
    const after = await rewardsOf(reloaded, items);
    for (let i = 0; i < 2; i++) expect(Math.abs(after[i] - before[i])).toBeLessThan(1e-4);
    expect(after[0]).toBeGreaterThan(after[1]);

    const scored = spawnSync(
      process.execPath,
      [bin, 'score-rm', '-m', out, '--dataset', file, '--limit', '10', '--json'],
      {
        encoding: 'utf8',
      },
    );
    expect(scored.status, scored.stderr).toBe(0);
    expect(JSON.parse(scored.stdout)).toMatchObject({ accuracy: 1, pairs: 10 });
    const one = spawnSync(
      process.execPath,
      [bin, 'score-rm', '-m', out, '--prompt', 'Tell me a story.', '--response', 'Once upon a time.', '--json'],
      { encoding: 'utf8' },
    );
    expect(JSON.parse(one.stdout).reward).toBeCloseTo(before[0], 4);
    expect(await llm.load(out).reward('Tell me a story.', 'Once upon a time.')).toBeCloseTo(before[0], 4);
  }, 120_000);

  it('resumes exactly from its newest checkpoint (LoRA adapter and head), and packs pairs without changing the loss', async () => {
    const file = pairsFile(24);
    const out = join(tmp('llmbox-rm-resume-'), 'run');
    const opts = {
      datasets: [file],
      maxLength: 96,
      batchSize: 4,
      maxSteps: 6,
      saveEvery: 3,
      lr: 5e-3,
      valSize: 4,
      output: out,
      lora: { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj'] },
    };
    const whole = await trainReward(await loadModel(STORIES), opts);
    rmSync(join(out, 'checkpoint-6'), { recursive: true });
    const resumed = await trainReward(await loadModel(STORIES), { ...opts, resume: true });
    expect(resumed.resumedFrom).toBe(3);
    expect(resumed.metrics.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6]);
    for (let i = 3; i < 6; i++) expect(resumed.metrics[i].loss).toBeCloseTo(whole.metrics[i].loss, 5);
    expect(resumed.evals.at(-1)!.margin).toBeCloseTo(whole.evals.at(-1)!.margin, 5);
    const packed = await trainReward(await loadModel(STORIES), {
      ...opts,
      maxSteps: 2,
      output: undefined,
      packing: true,
    });
    for (let i = 0; i < 2; i++) expect(packed.metrics[i].loss).toBeCloseTo(whole.metrics[i].loss, 4);
  }, 180_000);

  it('scores an over-long conversation as training cuts it: BOS, the prompt end and the reply', async () => {
    const loaded = await loadModel(STORIES);
    addRewardHead(loaded.model, 1);
    const long = 'The dog ran to the park and played. '.repeat(40);
    const item = { prompt: [{ role: 'user' as const, content: long }], response: 'Once upon a time.' };
    const [cut] = await rewardsOf(loaded, [item], { maxLength: 64 });
    const { pairs } = pairRows(
      loaded,
      [{ kind: 'preference', prompt: item.prompt, chosen: item.response, rejected: 'No.' }],
      64,
    );
    const [row] = segmentRewards(loaded.model, toBatch([pairs[0].chosen])).dataSync();
    expect(cut).toBeCloseTo(row, 5);
    expect(pairs[0].chosen.ids[0]).toBe(loaded.tokenizer!.bosTokenId);
    expect((await rewardsOf(loaded, [item], { maxLength: 128 }))[0]).not.toBeCloseTo(cut, 3);
  });

  it('refuses classifiers with more than one label, and score-rm on a causal LM', () => {
    const cfg = JSON.parse(readFileSync(join(STORIES, 'config.json'), 'utf8'));
    const e = llmboxErrorOf(() =>
      parseConfig({ ...cfg, architectures: ['LlamaForSequenceClassification'], num_labels: 3 }),
    );
    expect(e.field).toBe('num_labels');
    // transformers' default for a classifier without num_labels is 2
    expect(() => parseConfig({ ...cfg, architectures: ['LlamaForSequenceClassification'] })).toThrow(/2 labels/);
    const r = spawnSync(process.execPath, [bin, 'score-rm', '-m', STORIES, '--prompt', 'a', '--response', 'b'], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/not a reward model: no score.weight/);
  });

  it('llmbox train --stage rm trains in full with a margin and reports held-out accuracy', () => {
    const out = join(tmp('llmbox-rm-cli-'), 'rm');
    const r = spawnSync(
      process.execPath,
      [
        bin,
        'train',
        '-m',
        STORIES,
        '--stage',
        'rm',
        '--dataset',
        pairsFile(24),
        '--max-steps',
        '6',
        '--batch-size',
        '4',
        '--max-length',
        '96',
        '--lr',
        '0.002',
        '--val-size',
        '4',
        '--rm-margin',
        '0.5',
        '--output',
        out,
        '--json',
      ],
      { encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ stage: 'rm', steps: 6, pairs: { train: 20, val: 4, dropped: 0 } });
    expect(j.evals.at(-1).accuracy).toBeGreaterThanOrEqual(j.evals[0].accuracy);
  }, 120_000);
});
