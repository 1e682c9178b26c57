/**
 * HellaSwag end to end on the shipped model, beside llama.cpp on the same weights in the same run:
 * `llmbox eval -m stories260K -d hellaswag --limit N` (the CLI in a child, fresh output, wall time
 * from spawn to exit), then llama.cpp (node-llama-cpp, the model exported as f32 GGUF, in a child of
 * its own, timed the same way) scoring the same (context, ending) pairs: each context evaluated once
 * and its four endings on top of it, as llama.cpp's own `perplexity --hellaswag` does. The endings'
 * log-likelihoods of the two are compared, so the speed is of the same numbers.
 *
 *   npm run bench:hellaswag [-- --limit 1000 --threads 1]
 *
 * llama.cpp's scores come from node-llama-cpp's full next-token distributions (temperature 1, no
 * top-k/top-p/min-p), a JavaScript Map per scored position: part of its time is that Map, so a third
 * run evaluates the same tokens without asking for any distribution, llama.cpp's floor.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeGgufModel } from '../lib/models/gguf.js';
import { loadModel } from '../lib/models/load.js';
import { llamaCpp, type LlamaCppModel } from '../tests/helpers/llama-cpp.js';
import { arg, inChild } from './common.js';

const LIMIT = arg('limit') ?? '1000';
const THREADS = arg('threads') ?? '1';
const STORIES = fileURLToPath(new URL('../../shared/models/stories260K', import.meta.url));
// The child's lower bound: the same tokens evaluated, no distributions asked for (no scores).
const TOKENS_ONLY = process.argv.includes('--tokens-only');
const BIN = resolve(import.meta.dirname, '..', 'bin', 'llmbox.js');

interface Pair {
  context: string;
  continuation: string;
}
interface Sample {
  arguments: Record<string, { arg_0: string; arg_1: string }>;
  resps: [number, boolean][][];
}

/** What node-llama-cpp's controlledEvaluate gives back for a position asked for its next-token distribution. */
type Evaluated = { next: { probabilities: Map<number, number> } } | undefined;
type Sequence = {
  readonly nextTokenIndex: number;
  controlledEvaluate(input: (number | [number, object])[]): Promise<Evaluated[]>;
  eraseContextTokenRanges(ranges: { start: number; end: number }[]): Promise<void>;
};

// The whole distribution: temperature 1, and none of the samplers that would cut its tail.
const DIST = { generateNext: { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } } };

/** Log-probabilities of `ids[from..]` each given what precedes it, evaluated on top of what `seq` holds. */
async function scoreTail(seq: Sequence, ids: number[], from: number, held: number): Promise<number[]> {
  if (TOKENS_ONLY) {
    await seq.controlledEvaluate(ids.slice(held, ids.length - 1));
    return [0];
  }
  const input = ids
    .slice(held, ids.length - 1)
    .map((t, i): number | [number, object] => (held + i >= from - 1 ? [t, DIST] : t));
  const out = await seq.controlledEvaluate(input);
  const lps: number[] = [];
  for (let i = from; i < ids.length; i++) lps.push(Math.log(out[i - 1 - held]!.next.probabilities.get(ids[i]!) ?? 0));
  return lps;
}

/** Sum of log p(ending | context) for each pair, the context's tokens kept across a task's endings. */
async function llamaCppScores(model: LlamaCppModel, tasks: Pair[][]): Promise<number[][]> {
  // Keys and values in float32 and no flash attention, as llmbox computes attention: llama.cpp's CPU
  // flash attention (its default) rounds to f16 and moved the endings' log-likelihoods by 1e-2 (4e-4
  // relative); without it they agree to 1e-6.
  const context = await model.createContext({
    contextSize: 512,
    threads: Number(THREADS),
    experimentalKvCacheKeyType: 'F32',
    experimentalKvCacheValueType: 'F32',
    flashAttention: false,
  } as Parameters<LlamaCppModel['createContext']>[0]);
  const seq = (context as unknown as { getSequence(): Sequence }).getSequence();
  const bos = model.tokens.bos !== null ? [model.tokens.bos] : [];
  const scores: number[][] = [];
  for (const pairs of tasks) {
    await seq.eraseContextTokenRanges([{ start: 0, end: seq.nextTokenIndex }]);
    const ctx = [...bos, ...model.tokenize(pairs[0]!.context)];
    await seq.controlledEvaluate(ctx.slice(0, -1));
    const row: number[] = [];
    for (const { context: c, continuation } of pairs) {
      // lm-eval's split: the whole string encoded once, the ending what follows the context's count.
      const whole = [...bos, ...model.tokenize(c + continuation)];
      const same = whole.slice(0, ctx.length).every((t, i) => t === ctx[i]);
      if (!same) await seq.eraseContextTokenRanges([{ start: 0, end: seq.nextTokenIndex }]);
      const held = same ? ctx.length - 1 : 0;
      row.push((await scoreTail(seq, whole, ctx.length, held)).reduce((a, b) => a + b, 0));
      // Back to the context alone (all of it again where this ending's tokens had merged into it).
      await seq.eraseContextTokenRanges([{ start: same ? ctx.length - 1 : 0, end: seq.nextTokenIndex }]);
      if (!same) await seq.controlledEvaluate(ctx.slice(0, -1));
    }
    scores.push(row);
  }
  await context.dispose();
  return scores;
}

const readSamples = (file: string) =>
  readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Sample);

function pairsOf(samples: Sample[]): Pair[][] {
  return samples.map((s) => Object.values(s.arguments).map((a) => ({ context: a.arg_0, continuation: a.arg_1 })));
}

if (process.argv.includes('--child')) {
  const t = performance.now();
  const cpp = await llamaCpp();
  const model = await cpp!.loadModel({ modelPath: arg('child')! });
  const scores = await llamaCppScores(model, pairsOf(readSamples(arg('samples')!)));
  console.log(JSON.stringify({ scores, seconds: (performance.now() - t) / 1000 }));
  await model.dispose();
  process.exit(0);
}

if (!(await llamaCpp())) throw new Error('llama.cpp is not installed: npm ci --prefix tools/llama-cpp --omit=optional');
const dir = mkdtempSync(join(tmpdir(), 'llmbox-hellaswag-bench-'));
const base = await loadModel(STORIES);
const gguf = join(dir, 'stories260K-f32.gguf');
writeGgufModel(
  gguf,
  { config: base.model.config, raw: base.model.toRaw(), tokenizer: base.tokenizer!, name: 'stories260K' },
  'f32',
);
base.model.dispose();

const t0 = performance.now();
const run = spawnSync(
  process.execPath,
  [
    BIN,
    '--threads',
    THREADS,
    'eval',
    '-m',
    STORIES,
    '-d',
    'hellaswag',
    '--limit',
    LIMIT,
    '--output',
    join(dir, 'out'),
    '--json',
  ],
  { encoding: 'utf8' },
);
const oursS = (performance.now() - t0) / 1000;
if (run.status !== 0) throw new Error(`llmbox eval failed: ${run.stderr}`);
const samplesFile = join(
  dir,
  'out',
  readdirSync(join(dir, 'out')).find((f) => f.startsWith('samples_hellaswag'))!,
);
const samples = readSamples(samplesFile);

/** llama.cpp on the samples in a child of this script: its result and the wall time from spawn to exit. */
function llamaCppChild(...extra: string[]) {
  const t = performance.now();
  const out = inChild<{ scores: number[][]; seconds: number }>(fileURLToPath(import.meta.url), [
    '--child',
    gguf,
    '--samples',
    samplesFile,
    ...extra,
  ]);
  return { ...out, wall: (performance.now() - t) / 1000 };
}
const { scores: theirs, seconds: theirsInside, wall: theirsS } = llamaCppChild();
const { seconds: floorInside, wall: floorS } = llamaCppChild('--tokens-only');

const ours = samples.map((s) => s.resps.map((r) => r[0]![0]));
const argmax = (v: number[]) => v.indexOf(Math.max(...v));
let maxRel = 0,
  agree = 0;
ours.forEach((row, i) => {
  row.forEach((lp, j) => (maxRel = Math.max(maxRel, Math.abs(lp - theirs[i]![j]!) / Math.max(1, Math.abs(lp)))));
  if (argmax(row) === argmax(theirs[i]!)) agree++;
});
rmSync(dir, { recursive: true, force: true });

console.log(`\nHellaSwag, stories260K, ${samples.length} tasks (${samples.length * 4} endings), ${THREADS} thread(s)`);
console.log('                                   wall s   tasks/s');
console.log(
  `llmbox eval (CLI, f32 folder)  ${oursS.toFixed(1).padStart(10)} ${(samples.length / oursS).toFixed(1).padStart(9)}`,
);
console.log(
  `llama.cpp (same weights, GGUF) ${theirsS.toFixed(1).padStart(10)} ${(samples.length / theirsS).toFixed(1).padStart(9)}`,
);
console.log(`  (of which loading llama.cpp and the model, and scoring: ${theirsInside.toFixed(1)} s)`);
console.log(
  `llama.cpp, the same tokens, no scores ${floorS.toFixed(1).padStart(4)} ${(samples.length / floorS).toFixed(1).padStart(9)}   (inside: ${floorInside.toFixed(1)} s)`,
);
console.log(
  `ratio (llama.cpp time / llmbox time): ${(theirsS / oursS).toFixed(2)}x scoring, ${(floorS / oursS).toFixed(2)}x against its evaluation alone`,
);
console.log(
  `same best ending in ${agree}/${samples.length} tasks; largest ending log-likelihood difference ${maxRel.toExponential(1)} (relative)`,
);
