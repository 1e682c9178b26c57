// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { initEngine, tf } from '../lib/engine/index.js';
import { LlmboxError } from '../lib/errors.js';
import { loadModel } from '../lib/models/load.js';
import { readSafetensors } from '../lib/models/safetensors.js';
import { readRecords } from '../lib/data/read.js';
import { addLora, loadAdapter, mergeLora, saveAdapter } from '../lib/train/lora.js';
import { AdamW, learningRate } from '../lib/train/optim.js';
import { train, type TrainOptions } from '../lib/train/trainer.js';
import { prepareData } from '../lib/train/data.js';
import type { RowSource } from '../lib/train/batches.js';
import { SHARED_DATA, STORIES, tmp } from './helpers/models.js';

const DATA = SHARED_DATA;
const SFT = join(DATA, 'sft_samples/dolly_hhrlhf_train_small.jsonl');
const TEXT = join(DATA, 'pretrain_text/tinyshakespeare.txt');
/** Runs fn with LLMBOX_CACHE_DIR pointing at a fresh folder. */
async function inCacheDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = tmp();
  process.env.LLMBOX_CACHE_DIR = dir;
  try {
    await fn(dir);
  } finally {
    delete process.env.LLMBOX_CACHE_DIR;
  }
}
const rowsOf = (rs: RowSource) => Array.from({ length: rs.length }, (_, i) => rs.get(i));
const base: Partial<TrainOptions> = { maxLength: 128, batchSize: 2, lr: 2e-3, valSize: 8, seed: 3 };

async function logits(dir: string | Awaited<ReturnType<typeof loadModel>>, ids = [1, 403, 407, 261, 300]) {
  const lm = typeof dir === 'string' ? await loadModel(dir) : dir;
  const h = lm.model.forward([ids]);
  const out = lm.model.logits(h.reshape([ids.length, lm.model.config.hiddenSize]) as tf.Tensor2D);
  const data = Array.from(out.dataSync());
  tf.dispose([h, out]);
  return data;
}
const maxDiff = (a: number[], b: number[]) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

describe('optimizer and schedule', () => {
  it('AdamW matches the update rule computed independently (bias correction, decoupled decay, no decay on norms)', async () => {
    await initEngine();
    const opt = new AdamW({ weightDecay: 0.1 });
    let p = new Map<string, tf.Tensor>([
      ['w', tf.tensor1d([0.5, -1])],
      ['model.norm.weight', tf.tensor1d([1])],
    ]);
    const gs = [
      [0.2, -0.4, 0.3],
      [0.1, 0.3, -0.2],
    ];
    const ref = { w: [0.5, -1], n: [1], m: [0, 0, 0], v: [0, 0, 0] };
    gs.forEach((g, k) => {
      const grads = new Map<string, tf.Tensor>([
        ['w', tf.tensor1d(g.slice(0, 2))],
        ['model.norm.weight', tf.tensor1d(g.slice(2))],
      ]);
      p = opt.apply(p, grads, 0.01);
      const t = k + 1;
      g.forEach((gi, i) => {
        ref.m[i] = 0.9 * ref.m[i] + 0.1 * gi;
        ref.v[i] = 0.999 * ref.v[i] + 0.001 * gi * gi;
        const upd = ref.m[i] / (1 - 0.9 ** t) / (Math.sqrt(ref.v[i] / (1 - 0.999 ** t)) + 1e-8);
        if (i < 2) ref.w[i] = ref.w[i] * (1 - 0.01 * 0.1) - 0.01 * upd;
        else ref.n[0] = ref.n[0] - 0.01 * upd;
      });
    });
    Array.from(p.get('w')!.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(ref.w[i], 6));
    expect(p.get('model.norm.weight')!.dataSync()[0]).toBeCloseTo(ref.n[0], 6);
  });

  it('warmup rises linearly; cosine and linear decay reach the floor at the last step', () => {
    const o = { lr: 1, warmupSteps: 4, totalSteps: 14, schedule: 'cosine' as const };
    expect([0, 1, 2, 3].map((s) => learningRate(s, o))).toEqual([0.2, 0.4, 0.6, 0.8]);
    expect(learningRate(4, o)).toBe(1);
    expect(learningRate(9, o)).toBeCloseTo(0.5, 12);
    expect(learningRate(14, o)).toBeCloseTo(0, 12);
    expect(learningRate(9, { ...o, schedule: 'linear' })).toBeCloseTo(0.5, 12);
    expect(learningRate(14, { ...o, schedule: 'linear', minLrRatio: 0.1 })).toBeCloseTo(0.1, 12);
  });
});

describe('trainer', () => {
  it('resume continues with the same data order and the same loss curve as an uninterrupted run', async () => {
    const opts: TrainOptions = {
      ...base,
      datasets: [SFT],
      stage: 'sft',
      packing: true,
      maxSteps: 6,
      saveEvery: 2,
      evalEvery: 3,
    };
    const full = await train(await loadModel(STORIES), { ...opts, output: tmp() });
    const out = tmp();
    const crash = new Error('simulated crash');
    await expect(
      train(await loadModel(STORIES), {
        ...opts,
        output: out,
        onStep: (m) => {
          if (m.step === 3) throw crash;
        },
      }),
    ).rejects.toBe(crash);
    expect(existsSync(join(out, 'checkpoint-2', 'trainer_state.json'))).toBe(true);
    expect(existsSync(join(out, 'checkpoint-3'))).toBe(false);
    // Interrupted saves of a process that is gone leave temporary folders: the resumed run removes them.
    const dead = spawnSync('true').pid!;
    for (const t of [`checkpoint-4.tmp-${dead}`, `.final.tmp-${dead}`]) mkdirSync(join(out, t));
    const resumed = await train(await loadModel(STORIES), { ...opts, output: out, resume: true });
    expect(readdirSync(out).filter((n) => n.includes('.tmp-'))).toEqual([]);
    for (const f of ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json'])
      expect(existsSync(join(out, f)), f).toBe(true);
    expect(resumed.resumedFrom).toBe(2);
    expect(resumed.losses.length).toBe(6);
    resumed.losses.forEach((l, i) => expect(Math.abs(l - full.losses[i])).toBeLessThan(1e-5));
    expect(Math.abs(resumed.evalLoss! - full.evalLoss!)).toBeLessThan(1e-5);
    // The final model in the output folder loads and matches the in-memory result of the other run.
    expect(maxDiff(await logits(out), await logits(join(out, 'checkpoint-6')))).toBe(0);
    // Changed settings refuse to resume from a checkpoint they did not write.
    await expect(train(await loadModel(STORIES), { ...opts, lr: 1e-3, output: out, resume: true })).rejects.toThrow(
      LlmboxError,
    );
  });

  it('gradient accumulation: 2 x 2 rows per step give the update of 4 rows at once', async () => {
    const opts: TrainOptions = { ...base, datasets: [SFT], stage: 'sft', maxSteps: 2, valSize: 0, maxGradNorm: 0 };
    const a = await loadModel(STORIES),
      b = await loadModel(STORIES);
    const ra = await train(a, { ...opts, batchSize: 4, gradAccum: 1 });
    const rb = await train(b, { ...opts, batchSize: 2, gradAccum: 2 });
    ra.losses.forEach((l, i) => expect(Math.abs(l - rb.losses[i])).toBeLessThan(1e-5));
    expect(maxDiff(await logits(a), await logits(b))).toBeLessThan(1e-4);
  });

  it('pre-training lowers the validation loss on held-out text', async () => {
    const r = await train(await loadModel(STORIES), {
      ...base,
      datasets: [TEXT],
      stage: 'pt',
      maxLength: 128,
      batchSize: 4,
      maxSteps: 12,
      lr: 3e-3,
      valSize: 40,
      evalEvery: 6,
    });
    expect(r.evalLosses.map((e) => e.step)).toEqual([0, 6, 12]);
    expect(r.evalLosses[2].loss).toBeLessThan(r.evalLosses[0].loss - 0.2);
    expect(r.data.utilisation).toBe(1);
  });

  it('LoRA: trains only the adapters, saves and loads PEFT layout, and merges to the same outputs', async () => {
    const lm = await loadModel(STORIES);
    const before = await logits(lm);
    const baseQ = Array.from(lm.model.params.get('model.layers.0.self_attn.q_proj.weight')!.dataSync());
    const out = tmp();
    const r = await train(lm, {
      ...base,
      datasets: [SFT],
      stage: 'sft',
      maxSteps: 4,
      lr: 1e-2,
      lora: { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'down_proj'] },
      output: out,
    });
    expect(r.parameters.trainable).toBe(5 * (4 * (64 + 64) + 4 * (64 + 32) + 4 * (172 + 64)));
    expect(Array.from(lm.model.params.get('model.layers.0.self_attn.q_proj.weight')!.dataSync())).toEqual(baseQ);
    const adapted = await logits(lm);
    expect(maxDiff(adapted, before)).toBeGreaterThan(1e-3);
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({
      peft_type: 'LORA',
      r: 4,
      lora_alpha: 8,
      target_modules: ['q_proj', 'v_proj', 'down_proj'],
      task_type: 'CAUSAL_LM',
    });
    const raw = readSafetensors(join(out, 'adapter_model.safetensors'));
    expect(raw.get('base_model.model.model.layers.2.mlp.down_proj.lora_A.weight')!.shape).toEqual([4, 172]);
    expect(raw.get('base_model.model.model.layers.2.mlp.down_proj.lora_B.weight')!.shape).toEqual([64, 4]);
    expect(raw.size).toBe(5 * 3 * 2);
    const fresh = await loadModel(STORIES);
    loadAdapter(out, fresh.model);
    expect(maxDiff(await logits(fresh), adapted)).toBeLessThan(1e-5);
    mergeLora(fresh.model);
    expect(fresh.model.adapters.size).toBe(0);
    expect(maxDiff(await logits(fresh), adapted)).toBeLessThan(1e-4);
  });

  it('a fresh adapter leaves the model unchanged (B starts at zero)', async () => {
    const lm = await loadModel(STORIES);
    const before = await logits(lm);
    addLora(lm.model, { rank: 2, targets: ['all-linear'] });
    expect(lm.model.adapters.size).toBe(5 * 7 * 2);
    expect(maxDiff(await logits(lm), before)).toBe(0);
    const dir = tmp();
    saveAdapter(dir, lm.model);
    expect(() => addLora(lm.model, { rank: 2 })).toThrow(/already has LoRA/);
  });
});

describe('training data', () => {
  it("reads LLaMA-Factory's dataset_info.json: alpaca columns and sharegpt tags", async () => {
    const dir = tmp();
    writeFileSync(join(dir, 'a.json'), JSON.stringify([{ q: 'Add 2 and 3.', ctx: '', a: '5', sys: 'Be brief.' }]));
    writeFileSync(
      join(dir, 's.jsonl'),
      JSON.stringify({
        msgs: [
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: 'Hello!' },
        ],
      }) + '\n',
    );
    writeFileSync(
      join(dir, 'dataset_info.json'),
      JSON.stringify({
        math: { file_name: 'a.json', columns: { prompt: 'q', query: 'ctx', response: 'a', system: 'sys' } },
        chat: {
          file_name: 's.jsonl',
          formatting: 'sharegpt',
          columns: { messages: 'msgs' },
          tags: { role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant' },
        },
      }),
    );
    const math = await readRecords('math', { dataDir: dir });
    expect(math.records).toEqual([
      {
        kind: 'chat',
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Add 2 and 3.' },
          { role: 'assistant', content: '5' },
        ],
      },
    ]);
    const chat = await readRecords('chat', { dataDir: dir });
    expect(chat.records[0]).toEqual({
      kind: 'chat',
      messages: [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello!' },
      ],
    });
    await expect(readRecords('nope', { dataDir: dir })).rejects.toThrow(/no dataset named nope/);
  });
});

describe('tokenized cache', () => {
  it('a second preparation reads the tokens from disk and gives the same rows; a corrupt file is rewritten', () =>
    inCacheDir(async (dir) => {
      const lm = await loadModel(STORIES);
      const o = {
        datasets: [SFT, join(DATA, 'pretrain_text/tinystories_sample.txt')],
        stage: 'sft' as const,
        packing: true,
        maxLength: 128,
        valSize: 8,
        seed: 1,
      };
      const first = await prepareData(lm.tokenizer!, o);
      expect(first.cacheHits).toBe(0);
      const files = readdirSync(join(dir, 'tokenized'));
      expect(files).toHaveLength(2);
      const second = await prepareData(lm.tokenizer!, o);
      expect(second.cacheHits).toBe(2);
      expect(rowsOf(second.train)).toEqual(rowsOf(first.train));
      expect(second.val).toEqual(first.val);
      writeFileSync(join(dir, 'tokenized', files[0]), 'garbage');
      const third = await prepareData(lm.tokenizer!, o);
      expect(third.cacheHits).toBe(1);
      expect(rowsOf(third.train)).toEqual(rowsOf(first.train));
      // Other settings are other keys.
      expect((await prepareData(lm.tokenizer!, { ...o, trainOnPrompt: true })).cacheHits).toBe(0);
    }));
});

describe('pre-training data streamed from disk', () => {
  it('rows are the documents, tokenized line by line into the cache, concatenated whole and cut to length', () =>
    inCacheDir(async (dir) => {
      const lm = await loadModel(STORIES);
      const file = join(dir, 'docs.txt');
      const docs = Array.from(
        { length: 60 },
        (_, i) => `Tom had ${i} red balls and ${i * 3 + 1} blue ones, said the story number ${i}.`,
      );
      writeFileSync(file, docs.join('\n') + '\n');
      const o = { datasets: [file], stage: 'pt' as const, maxLength: 64, valSize: 0, seed: 5 };
      const data = await prepareData(lm.tokenizer!, o);
      const tokenized = docs.map((d) => lm.tokenizer!.encode(d).concat(lm.tokenizer!.eosTokenId!));
      const total = tokenized.reduce((n, d) => n + d.length, 0);
      expect(data.train.length).toBe(Math.floor(total / 64));
      expect(data.cacheHits).toBe(0);
      // Split the rows' token stream at BOS (each document starts with it): every whole piece is one of
      // the documents, each at most once, and all documents but the cut-off tail appear.
      const stream = rowsOf(data.train).flatMap((r) => r.ids);
      const pieces: string[] = [];
      let cur: number[] = [];
      for (const id of stream) {
        if (id === 1 && cur.length) {
          pieces.push(cur.join(','));
          cur = [];
        }
        cur.push(id);
      }
      const known = new Set(tokenized.map((d) => d.join(',')));
      expect(pieces.every((p) => known.has(p))).toBe(true);
      expect(new Set(pieces).size).toBe(pieces.length);
      expect(pieces.length).toBeGreaterThanOrEqual(docs.length - 2);
      data.close();
      const again = await prepareData(lm.tokenizer!, o);
      expect(again.cacheHits).toBe(1);
      expect(rowsOf(again.train)).toEqual(rowsOf(data.train));
      again.close();
    }));
});

describe('llmbox train CLI', () => {
  it('mixes datasets by ratio, trains, and prints the stable JSON summary', () => {
    const out = tmp();
    const bin = resolve(import.meta.dirname, '..', 'bin', 'llmbox.js');
    const r = spawnSync(
      process.execPath,
      [
        bin,
        'train',
        '-m',
        STORIES,
        '--dataset',
        TEXT,
        join(DATA, 'pretrain_text/tinystories_sample.txt'),
        '--dataset_ratio',
        '0.75',
        '0.25',
        '--mix-total',
        '400',
        '--stage',
        'pt',
        '--max-length',
        '64',
        '--batch-size',
        '2',
        '--max-steps',
        '3',
        '--lr',
        '1e-3',
        '--output',
        out,
        '--json',
      ],
      { encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.steps).toBe(3);
    expect(j.losses).toHaveLength(3);
    expect(typeof j.eval_loss).toBe('number');
    expect(j.checkpoint).toBe(join(out, 'checkpoint-3'));
    expect(j.data.sources.map((s: { mixed: number }) => s.mixed)).toEqual([300, 100]);
    expect(existsSync(join(out, 'model.safetensors'))).toBe(true);
    const bad = spawnSync(
      process.execPath,
      [bin, 'train', '-m', STORIES, '--dataset', TEXT, '--stage', 'xx', '--output', out],
      { encoding: 'utf8' },
    );
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/argument 'xx' is invalid\. Allowed choices are pt, sft/);
  });
});
