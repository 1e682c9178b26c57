/**
 * DPO on HH-RLHF pairs with the shipped model, side by side in one run: LoRA with the reference as
 * the adapter switched off (one forward more per step, no copy, nothing precomputed), the same with
 * pairs packed into rows, LoRA with the reference precomputed once, and full fine-tuning (reference
 * precomputed, as it must be).
 * Prints step time, the precomputation's time, resident memory, and the held-out reward accuracy
 * and margin before and after. `npm run bench:dpo [-- --steps 60 --batch 4 --val 64 --pairs 400 --max-length 256]`.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../lib/models/load.js';
import { trainPreference, type PreferenceResult } from '../lib/train/preference.js';
import { defaultDataDir } from '../lib/util/paths.js';
import { arg } from './common.js';

const steps = Number(arg('steps') ?? 60);
const batchSize = Number(arg('batch') ?? 4);
const valSize = Number(arg('val') ?? 64);
const pairs = Number(arg('pairs') ?? 400);
const maxLength = Number(arg('max-length') ?? 256);
// The first N pairs of the file (the reference is precomputed over every training pair in two of the runs).
const data = join(mkdtempSync(join(tmpdir(), 'llmbox-bench-dpo-')), 'pairs.jsonl');
writeFileSync(
  data,
  readFileSync(`${defaultDataDir()}/hh_rlhf/harmless-base_test.jsonl`, 'utf8').split('\n').slice(0, pairs).join('\n') +
    '\n',
);
const lora = {
  rank: 8,
  alpha: 16,
  targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
};

async function run(name: string, opts: Omit<Parameters<typeof trainPreference>[1], 'datasets'>) {
  const loaded = await loadModel('stories260K');
  const t0 = performance.now();
  const r: PreferenceResult = await trainPreference(loaded, {
    datasets: [data],
    maxLength,
    batchSize,
    maxSteps: steps,
    valSize,
    ...opts,
  });
  const wall = (performance.now() - t0) / 1000;
  const step = r.metrics.reduce((a, m) => a + m.seconds, 0) / r.metrics.length;
  const [a, b] = [r.evals[0], r.evals.at(-1)!];
  const tokens = r.metrics.reduce((a, m) => a + m.tokens, 0) / r.metrics.length;
  return { name, r, wall, step, tokens, rss: process.memoryUsage().rss / 2 ** 20, a, b };
}

const rows = [
  await run('LoRA, reference = adapter off', { lr: 1e-3, lora }),
  await run('LoRA, adapter off, packed', { lr: 1e-3, lora, packing: true }),
  await run('LoRA, reference precomputed', { lr: 1e-3, lora, preference: { precomputeReference: true } }),
  await run('full, reference precomputed', { lr: 3e-4 }),
];
const pad = (s: string, n: number) => s.padEnd(n);
console.log(
  `stories260K, ${steps} steps of ${batchSize} pairs from the first ${pairs} HH-RLHF pairs (max ${maxLength} tokens), ${valSize} held-out pairs, sigmoid DPO beta 0.1\n`,
);
console.log(
  `${pad('setting', 32)} ${pad('step s', 7)} ${pad('tok/step', 9)} ${pad('wall s', 7)} ${pad('RSS MiB', 8)} ${pad('held-out acc', 16)} held-out margin`,
);
for (const x of rows)
  console.log(
    `${pad(x.name, 32)} ${pad(x.step.toFixed(3), 7)} ${pad(x.tokens.toFixed(0), 9)} ${pad(x.wall.toFixed(1), 7)} ${pad(x.rss.toFixed(0), 8)} ${pad(`${x.a.accuracy.toFixed(3)} -> ${x.b.accuracy.toFixed(3)}`, 16)} ${x.a.margin.toFixed(4)} -> ${x.b.margin.toFixed(4)}`,
  );
console.log(
  '\n(wall includes the precomputation of the reference over every training pair where it is precomputed; RSS is the process after each run, not a peak)',
);
