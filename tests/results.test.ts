// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
// Slow suite (kill -9 and resume of whole CLI runs, MMLU with and without the prefix cache): npm run test:fast leaves it out.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { evaluate } from '../lib/eval/evaluate.js';
import { LocalLM } from '../lib/eval/local.js';
import { loadModel, type LoadedModel } from '../lib/models/load.js';
import { resultsTable, samplesTable } from '../lib/report/eval-table.js';
import { SHARED_DATA, STORIES, tmp } from './helpers/models.js';
import { ScriptedLM } from './helpers/scripted.js';

const DATA = SHARED_DATA;

const BIN = fileURLToPath(new URL('../bin/llmbox.js', import.meta.url));
const resumeFiles = (dir: string) =>
  existsSync(join(dir, '.llmbox-resume')) ? readdirSync(join(dir, '.llmbox-resume')) : [];

describe('results files, fingerprint and resume', () => {
  let lm: LoadedModel;
  beforeAll(async () => {
    lm = await loadModel(STORIES);
  });

  it('writes lm-eval-compatible results and samples, with a reproducibility fingerprint', async () => {
    const out = tmp();
    const run = await evaluate(new LocalLM(lm), ['arc_easy', 'gsm8k'], { limit: 4, outputDir: out, maxNewTokens: 8 });
    const results = JSON.parse(readFileSync(run.files!.results, 'utf8'));
    expect(results.results.arc_easy['acc,none']).toBe(run.results[0].metrics.acc.value);
    expect(results.results.arc_easy).toHaveProperty(['acc_stderr,none']);
    expect(results.results.gsm8k).toHaveProperty(['exact_match,strict-match']);
    expect(results['n-shot']).toEqual({ arc_easy: 0, gsm8k: 8 });
    expect(results.configs.gsm8k.output_type).toBe('generate_until');
    // 8-shot GSM8K prompts are longer than stories260K's 512 positions: counted, not silent.
    expect(run.results[1].truncated).toBe(4);
    expect(run.results[0].truncated).toBe(0);
    expect(results.llmbox_tasks.gsm8k.truncated_prompts).toBe(4);
    const fp = results.llmbox_fingerprint;
    expect(fp.model_hash).toMatch(/^[0-9a-f]{16}$/);
    expect(fp.tasks.gsm8k).toMatchObject({ version: 1, method: 'gen', shots: 8 });
    expect(fp.tasks.arc_easy.prompt_hash).toMatch(/^[0-9a-f]{16}$/);
    expect(fp.lm).toMatchObject({ batch_size: 8, prefix_cache: true });
    expect(typeof fp.backend).toBe('string');
    const lines = readFileSync(run.files!.samples[0], 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toHaveLength(4);
    // four options, then the four after the content-free "Answer:"
    expect(Object.keys(lines[0].arguments)).toHaveLength(8);
    expect(lines[0].arguments.gen_args_0.arg_0).toMatch(/^Question: .*\nAnswer:$/s);
    expect(typeof lines[0].filtered_resps[0][0]).toBe('number');
    expect(resumeFiles(out)).toEqual([]);
  });

  it('continues an interrupted run without recomputing finished chunks, ending with the same numbers', async () => {
    const fresh = await evaluate(new LocalLM(lm), ['arc_challenge'], { limit: 20, chunkSize: 5 });
    const out = tmp();
    let chunks = 0;
    await expect(
      evaluate(new LocalLM(lm), ['arc_challenge'], {
        limit: 20,
        chunkSize: 5,
        outputDir: out,
        onProgress: () => {
          if (++chunks === 2) throw new Error('interrupted');
        },
      }),
    ).rejects.toThrow('interrupted');
    expect(resumeFiles(out)).toHaveLength(1);
    const resumed = await evaluate(new LocalLM(lm), ['arc_challenge'], { limit: 20, chunkSize: 5, outputDir: out });
    expect(resumed.results[0].resumed).toBe(10);
    expect(resumed.results[0].metrics).toEqual(fresh.results[0].metrics);
    expect(resumeFiles(out)).toEqual([]);
    // Interrupted again, then started over on purpose: nothing is reused.
    chunks = 0;
    const again = {
      limit: 20,
      chunkSize: 5,
      outputDir: out,
      onProgress: () => {
        if (++chunks === 2) throw new Error('interrupted');
      },
    };
    await expect(evaluate(new LocalLM(lm), ['arc_challenge'], again)).rejects.toThrow('interrupted');
    const over = await evaluate(new LocalLM(lm), ['arc_challenge'], {
      limit: 20,
      chunkSize: 5,
      outputDir: out,
      resume: false,
    });
    expect(over.results[0].resumed).toBe(0);
    expect(over.results[0].metrics).toEqual(fresh.results[0].metrics);
  });

  it('survives kill -9 of the CLI and resumes to the same results', async () => {
    const out = tmp();
    const args = [
      BIN,
      'eval',
      '-m',
      STORIES,
      '-d',
      'hellaswag',
      '--limit',
      '60',
      '--chunk-size',
      '4',
      '--output',
      out,
      '--json',
    ];
    const child = spawn(process.execPath, args, { stdio: 'ignore' });
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        const f = resumeFiles(out)[0];
        if (f && readFileSync(join(out, '.llmbox-resume', f), 'utf8').split('\n').length > 9) {
          clearInterval(timer);
          child.kill('SIGKILL');
          resolve();
        }
      }, 20);
      child.on('exit', () => {
        clearInterval(timer);
        reject(new Error('the run finished before it could be killed'));
      });
    });
    await new Promise((r) => child.on('exit', r));
    const partial = readFileSync(join(out, '.llmbox-resume', resumeFiles(out)[0]), 'utf8')
      .trim()
      .split('\n').length;
    expect(partial).toBeGreaterThanOrEqual(8);
    expect(partial).toBeLessThan(60);
    const resumed = spawnSync(process.execPath, args, { encoding: 'utf8' });
    expect(resumed.status).toBe(0);
    const fresh = spawnSync(
      process.execPath,
      [BIN, 'eval', '-m', STORIES, '-d', 'hellaswag', '--limit', '60', '--json'],
      { encoding: 'utf8' },
    );
    const a = JSON.parse(resumed.stdout).results.hellaswag,
      b = JSON.parse(fresh.stdout).results.hellaswag;
    expect(a.acc).toBe(b.acc);
    expect(a.acc_norm).toBe(b.acc_norm);
    expect(a.n).toBe(60);
  });

  // stories260K's 512-token window fits MMLU with 2 shots (5-shot prompts are truncated, which bypasses the cache).
  it('gives identical predictions with and without the prefix cache on MMLU few-shot', async () => {
    const opts = { limit: 6, shots: 2 };
    const cached = new LocalLM(lm);
    const withCache = await evaluate(cached, ['mmlu_astronomy', 'mmlu_virology'], opts);
    expect(cached.prefixCache!.stats.reusedTokens).toBeGreaterThan(1000);
    const without = await evaluate(new LocalLM(lm, { prefixCache: false }), ['mmlu_astronomy', 'mmlu_virology'], opts);
    withCache.results.forEach((r, t) => {
      r.samples.forEach((s, i) => {
        const a = s.filtered_resps as [number, boolean][],
          b = without.results[t].samples[i].filtered_resps as [number, boolean][];
        a.forEach(([ll], j) => expect(Math.abs(ll - b[j][0])).toBeLessThan(1e-5 * Math.max(1, Math.abs(ll))));
        expect(s.metrics).toEqual(without.results[t].samples[i].metrics);
      });
    });
  });
});

describe('perplexity tasks and the Arrow results table', () => {
  it('weights word/byte perplexity and bits per byte by whole-corpus counts (lm-eval wikitext definitions)', async () => {
    // A scripted model with a known log-likelihood per document: the aggregation is what is checked.
    const perChar = (t: string) => -0.37 * t.length - 1;
    const run = await evaluate(
      new ScriptedLM(
        () => '',
        () => 0,
        {},
        perChar,
      ),
      ['tinystories_ppl'],
      {},
    );
    const texts = readFileSync(`${DATA}/pretrain_text/tinystories_sample.txt`, 'utf8')
      .split('<|endoftext|>')
      .map((s) => s.trim())
      .filter(Boolean);
    const ll = texts.reduce((a, t) => a + perChar(t), 0);
    const words = texts.reduce((a, t) => a + t.split(/\s+/).length, 0);
    const bytes = texts.reduce((a, t) => a + Buffer.byteLength(t), 0);
    const m = run.results[0].metrics;
    expect(run.results[0].n).toBe(texts.length);
    expect(m.word_perplexity.value).toBeCloseTo(Math.exp(-ll / words), 6);
    expect(m.byte_perplexity.value).toBeCloseTo(Math.exp(-ll / bytes), 6);
    expect(m.bits_per_byte.value).toBeCloseTo(-ll / (bytes * Math.LN2), 8);
  });

  it('stories260K, trained on TinyStories, reads its own domain far better than Wikipedia', async () => {
    const local = new LocalLM(await loadModel(STORIES));
    const [stories, wiki] = [
      await evaluate(local, ['tinystories_ppl'], { limit: 3 }),
      await evaluate(local, ['wikipedia_ppl'], { limit: 1 }),
    ];
    expect(stories.results[0].metrics.bits_per_byte.value).toBeLessThan(wiki.results[0].metrics.bits_per_byte.value);
  });

  it('tabulates results per task, subset and metric, with group aggregates', async () => {
    // Scripted: the longest option wins, so the table's values are fixed without running a model.
    const run = await evaluate(
      new ScriptedLM(
        () => '',
        (r) => r.continuation.length,
      ),
      ['arc_easy', 'mmlu'],
      { limit: 1, shots: 0 },
    );
    const table = resultsTable(run);
    expect(table.schema.fields.map((f) => f.name)).toEqual([
      'task',
      'subset',
      'method',
      'shots',
      'metric',
      'value',
      'stderr',
      'n',
    ]);
    const rows = table.toArray().map((r) => r.toJSON());
    expect(rows.filter((r) => r.task === 'mmlu' && r.metric === 'acc' && r.subset !== null)).toHaveLength(57);
    const agg = rows.find((r) => r.task === 'mmlu' && r.subset === null && r.metric === 'acc')!;
    expect(agg.n).toBe(57);
    expect(agg.value).toBeCloseTo(run.groups[0].metrics.acc.value, 12);
    expect(rows.find((r) => r.task === 'arc_easy' && r.metric === 'acc')!.subset).toBeNull();
    const samples = samplesTable(run.results[0]);
    expect(samples.numRows).toBe(1);
    expect(samples.schema.fields.map((f) => f.name)).toEqual(
      expect.arrayContaining(['doc_id', 'id', 'target', 'answer', 'acc', 'acc_norm']),
    );
  });
});
