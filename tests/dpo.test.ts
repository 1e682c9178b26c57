import { spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { LlmboxError } from '../lib/errors.js';
import { Alignment, llm } from '../lib/llm.js';
import { loadModel } from '../lib/models/load.js';
import { segmentsOf } from '../lib/train/batches.js';
import { segmentLogprobSums } from '../lib/train/loss.js';
import { pairBatch, pairRows } from '../lib/train/pairs.js';
import { trainPreference } from '../lib/train/preference.js';
import { STORIES, tmp } from './helpers/models.js';

/** Pairs with one obvious preference: the chosen reply is always "Once upon a time.", the rejected one "zzz qqq". */
function preferenceFile(n = 40): string {
  const dir = tmp('llmbox-dpo-');
  const animals = ['cat', 'dog', 'bird', 'fish', 'frog', 'bear', 'duck', 'fox'];
  const rows = Array.from({ length: n }, (_, i) => ({
    prompt: `Tell me about the ${animals[i % animals.length]} number ${i}.`,
    chosen: 'Once upon a time.',
    rejected: 'zzz qqq xxj.',
  }));
  const file = join(dir, 'pairs.jsonl');
  writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return file;
}

describe('DPO on the shipped model', () => {
  it('targets only the response tokens of each side', async () => {
    const loaded = await loadModel(STORIES);
    const { pairs } = pairRows(
      loaded,
      [{ kind: 'preference', prompt: [{ role: 'user', content: 'Hi' }], chosen: 'Yes.', rejected: 'No way.' }],
      128,
    );
    const [p] = pairs;
    const text = (row: typeof p.chosen) => loaded.tokenizer!.decode(row.ids.filter((_, t) => row.targets[t] === 1));
    expect(text(p.chosen).trim()).toMatch(/^Yes\.(<\/s>)?$/);
    expect(text(p.rejected).trim()).toMatch(/^No way\.(<\/s>)?$/);
    // A multi-turn prompt: its earlier assistant turn is context, not a target; a long prompt keeps its
    // end and the whole reply within the row; pairs whose rows come out the same are dropped.
    const long = 'Tell me about dogs and cats and birds. '.repeat(20);
    const { pairs: multi, dropped } = pairRows(
      loaded,
      [
        {
          kind: 'preference',
          prompt: [
            { role: 'user', content: 'Hi' },
            { role: 'assistant', content: 'Hello there.' },
            { role: 'user', content: long },
          ],
          chosen: 'Dogs bark.',
          rejected: 'Cats purr.',
        },
        { kind: 'preference', prompt: [{ role: 'user', content: 'Same?' }], chosen: 'Yes.', rejected: 'Yes.' },
      ],
      64,
    );
    expect(dropped).toBe(1);
    expect(multi).toHaveLength(1);
    expect(multi[0].chosen.ids.length).toBeLessThanOrEqual(64);
    expect(text(multi[0].chosen).trim()).toMatch(/^Dogs bark\.(<\/s>)?$/);
    expect(text(multi[0].rejected).trim()).toMatch(/^Cats purr\.(<\/s>)?$/);
    expect(multi[0].chosen.ids[0]).toBe(loaded.tokenizer!.bosTokenId);
  });

  it('starts at ln 2 with margin 0, and LoRA (reference = adapter off) raises the held-out accuracy and margin', async () => {
    const loaded = await loadModel(STORIES);
    const r = await trainPreference(loaded, {
      datasets: [preferenceFile()],
      maxLength: 96,
      batchSize: 4,
      maxSteps: 12,
      lr: 1e-2,
      valSize: 8,
      lora: { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'up_proj', 'down_proj'] },
      preference: { loss: 'sigmoid', beta: 0.1 },
    });
    expect(r.reference).toBe('adapter off');
    expect(r.metrics[0].loss).toBeCloseTo(Math.LN2, 5);
    expect(r.metrics[0].margin).toBeCloseTo(0, 6);
    const [before, after] = [r.evals[0], r.evals.at(-1)!];
    expect(before).toMatchObject({ step: 0, accuracy: 0, margin: 0 });
    expect(after.accuracy).toBe(1);
    expect(after.margin).toBeGreaterThan(0.5);
    expect(after.loss).toBeLessThan(before.loss);
    expect(r.parameters.trainable).toBeLessThan(r.parameters.total / 5);
  }, 120_000);

  it('full fine-tuning uses reference log-probabilities computed before the first step; SimPO needs none', async () => {
    const file = preferenceFile(24);
    const full = await trainPreference(await loadModel(STORIES), {
      datasets: [file],
      maxLength: 96,
      batchSize: 4,
      maxSteps: 8,
      lr: 2e-3,
      valSize: 4,
      preference: { loss: 'sigmoid', beta: 0.5 },
    });
    expect(full.reference).toBe('precomputed');
    expect(full.evals.at(-1)!.margin).toBeGreaterThan(full.evals[0].margin);
    expect(full.evals.at(-1)!.accuracy).toBe(1);
    const simpo = await trainPreference(await loadModel(STORIES), {
      datasets: [file],
      maxLength: 96,
      batchSize: 4,
      maxSteps: 3,
      lr: 1e-3,
      valSize: 4,
      preference: { loss: 'simpo', beta: 2, gamma: 1 },
    });
    expect(simpo.reference).toBe('none');
    expect(Number.isFinite(simpo.metrics.at(-1)!.loss)).toBe(true);
  }, 120_000);

  it('resumes exactly from its newest checkpoint', async () => {
    const file = preferenceFile(24);
    const out = join(tmp('llmbox-dpo-resume-'), 'run');
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
    const whole = await trainPreference(await loadModel(STORIES), opts);
    // As if killed after step 3: only checkpoint-3 is left.
    rmSync(join(out, 'checkpoint-6'), { recursive: true });
    const resumed = await trainPreference(await loadModel(STORIES), { ...opts, resume: true });
    expect(resumed.resumedFrom).toBe(3);
    expect(resumed.metrics.map((m) => m.step)).toEqual([1, 2, 3, 4, 5, 6]);
    for (let i = 3; i < 6; i++) expect(resumed.metrics[i].loss).toBeCloseTo(whole.metrics[i].loss, 5);
    expect(resumed.evals.at(-1)!.margin).toBeCloseTo(whole.evals.at(-1)!.margin, 5);
  }, 120_000);

  it('packs pairs: both sides of a pair in one row (or adjacent rows), the same log-probabilities as unpacked rows', async () => {
    const loaded = await loadModel(STORIES);
    const records = ['A dog.', 'A cat sat on the mat all day long.', 'Hi.'].map((chosen, i) => ({
      kind: 'preference' as const,
      prompt: [{ role: 'user' as const, content: `Story ${i}, please.` }],
      chosen,
      rejected: `No ${'no '.repeat(i * 3)}thanks.`,
    }));
    const { pairs } = pairRows(loaded, records, 96);
    const lens = pairs.map((p) => p.chosen.ids.length + p.rejected.ids.length);
    // a row a little longer than the longest pair: not every pair fits beside another
    const packTo = Math.max(...lens) + 2;
    const packed = pairBatch(pairs, 0, packTo);
    const plain = pairBatch(pairs, 0);
    expect(packed.batch.ids.length).toBeLessThan(plain.batch.ids.length);
    const segs = segmentsOf(packed.batch.segments);
    pairs.forEach((_, i) => {
      // the two sides of a pair are neighbours in one row
      expect(packed.rejected[i]).toBe(packed.chosen[i] + 1);
      expect(segs[packed.chosen[i]].row).toBe(segs[packed.rejected[i]].row);
    });
    const a = segmentLogprobSums(loaded.model, packed.batch).dataSync();
    const b = segmentLogprobSums(loaded.model, plain.batch).dataSync();
    for (let i = 0; i < pairs.length; i++) {
      expect(a[packed.chosen[i]]).toBeCloseTo(b[plain.chosen[i]], 3);
      expect(a[packed.rejected[i]]).toBeCloseTo(b[plain.rejected[i]], 3);
    }
    // a pair too long for one row takes two adjacent rows of its own
    const split = pairBatch(
      pairs,
      0,
      Math.max(...pairs.map((p) => Math.max(p.chosen.ids.length, p.rejected.ids.length))),
    );
    const last = pairs.length - 1;
    const ss = segmentsOf(split.batch.segments);
    expect(ss[split.rejected[last]].row).toBe(ss[split.chosen[last]].row + 1);
  });

  it('trains on packed pairs with the same losses as unpacked ones', async () => {
    const file = preferenceFile(12);
    const opts = {
      datasets: [file],
      maxLength: 96,
      batchSize: 4,
      maxSteps: 3,
      lr: 5e-3,
      valSize: 4,
      lora: { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj'] },
    };
    const plain = await trainPreference(await loadModel(STORIES), opts);
    const packed = await trainPreference(await loadModel(STORIES), { ...opts, packing: true });
    expect(packed.metrics[0].loss).toBeCloseTo(Math.LN2, 5);
    for (let i = 0; i < 3; i++) expect(packed.metrics[i].loss).toBeCloseTo(plain.metrics[i].loss, 4);
    expect(packed.evals.at(-1)!.margin).toBeCloseTo(plain.evals.at(-1)!.margin, 3);
  }, 120_000);

  it('reads pairs as message lists (UltraFeedback) and LLaMA-Factory ranking datasets', async () => {
    const dir = tmp('llmbox-dpo-formats-');
    const conv = (reply: string) => [
      { role: 'user', content: 'Tell a story.' },
      { role: 'assistant', content: reply },
    ];
    writeFileSync(
      join(dir, 'uf.jsonl'),
      JSON.stringify({
        prompt: 'Tell a story.',
        chosen: conv('Once upon a time.'),
        rejected: conv('No.'),
        messages: conv('x'),
      }) + '\n',
    );
    writeFileSync(
      join(dir, 'rank.json'),
      JSON.stringify([{ instruction: 'Say hi.', chosen: 'Hi!', rejected: 'Bye.' }]),
    );
    writeFileSync(
      join(dir, 'dataset_info.json'),
      JSON.stringify({ ranked: { file_name: 'rank.json', ranking: true } }),
    );
    const loaded = await loadModel(STORIES);
    const { readRecords } = await import('../lib/data/read.js');
    const uf = (await readRecords(join(dir, 'uf.jsonl'))).records[0];
    expect(uf).toEqual({
      kind: 'preference',
      prompt: [{ role: 'user', content: 'Tell a story.' }],
      chosen: 'Once upon a time.',
      rejected: 'No.',
    });
    const ranked = (await readRecords('ranked', { dataDir: dir })).records[0];
    expect(ranked).toMatchObject({ kind: 'preference', chosen: 'Hi!', rejected: 'Bye.' });
    const r = await trainPreference(loaded, {
      datasets: ['ranked', join(dir, 'uf.jsonl')],
      dataDir: dir,
      maxLength: 64,
      batchSize: 2,
      maxSteps: 1,
      valSize: 0,
    });
    expect(r.pairs).toEqual({ train: 2, val: 0, dropped: 0 });
  });

  it('refuses data without pairs, naming the file', async () => {
    const dir = tmp('llmbox-dpo-bad-');
    const file = join(dir, 'sft.jsonl');
    writeFileSync(file, JSON.stringify({ prompt: 'a', response: 'b' }) + '\n');
    const err = await trainPreference(await loadModel(STORIES), { datasets: [file] }).catch((e) => e);
    expect(err).toBeInstanceOf(LlmboxError);
    expect(err.file).toBe(file);
    expect(err.message).toMatch(/no preference pairs/);
  });
});

describe('the fluent chain', () => {
  it("train({ stage: 'dpo' }) gives an Alignment: a per-step table and a margin chart", async () => {
    const a = await llm.load(STORIES).train({
      stage: 'dpo',
      datasets: [preferenceFile(16)],
      maxLength: 96,
      batchSize: 4,
      maxSteps: 3,
      lr: 5e-3,
      valSize: 4,
      lora: { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj'] },
    });
    expect(a).toBeInstanceOf(Alignment);
    expect(a.table.numRows).toBe(3);
    expect(a.table.schema.fields.map((f) => f.name)).toEqual([
      'step',
      'loss',
      'chosen_reward',
      'rejected_reward',
      'margin',
      'accuracy',
      'lr',
      'grad_norm',
    ]);
    const fig = a.plot().toJSON() as unknown as { data: { name: string }[] };
    expect(fig.data.map((d) => d.name)).toEqual(['reward margin', 'held-out margin', 'reward accuracy']);
    expect(String(a)).toMatch(/3 steps \(dpo, sigmoid, beta 0.1, reference: adapter off\); held-out accuracy 0.000 ->/);
  }, 120_000);
});

describe('llmbox train --stage dpo', () => {
  const bin = fileURLToPath(new URL('../bin/llmbox.js', import.meta.url));
  it('trains LoRA adapters and prints the held-out accuracy and margin before and after', () => {
    const out = join(tmp('llmbox-dpo-cli-'), 'run');
    const r = spawnSync(
      process.execPath,
      [
        bin,
        'train',
        '-m',
        STORIES,
        '--stage',
        'dpo',
        '--dataset',
        preferenceFile(24),
        '--lora-rank',
        '4',
        '--max-steps',
        '4',
        '--batch-size',
        '4',
        '--max-length',
        '96',
        '--lr',
        '0.01',
        '--val-size',
        '4',
        '--beta',
        '0.2',
        '--loss',
        'hinge',
        '--output',
        out,
        '--json',
      ],
      { encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ stage: 'dpo', loss_type: 'hinge', beta: 0.2, reference: 'adapter off', steps: 4 });
    expect(j.evals[0]).toMatchObject({ step: 0, accuracy: 0 });
    expect(existsSync(join(out, 'adapter_config.json'))).toBe(true);
  }, 120_000);
});
