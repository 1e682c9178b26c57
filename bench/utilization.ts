/**
 * Utilization methods side by side on the shipped model and real data: each ICL selection on a
 * multiple-choice task and each chain-of-thought mode on GSM8K, with the accuracy, how often the
 * prediction agrees with the default's, the wall time (selection included) and the prompt tokens
 * the prefix cache served. `npm run bench:utilization [-- --limit 200 --gsm-limit 40]`.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { evaluate, type EvaluateOptions, type TaskResult } from '../lib/eval/evaluate.js';
import { LocalLM } from '../lib/eval/local.js';
import { argmax } from '../lib/models/sampling.js';
import { loadModel } from '../lib/models/load.js';
import { arg } from './common.js';

const limit = Number(arg('limit') ?? 200);
const gsmLimit = Number(arg('gsm-limit') ?? 40);
const task = arg('task') ?? 'arc_easy';
// A fresh selection cache, so every selection's cost is measured.
process.env.LLMBOX_CACHE_DIR = mkdtempSync(join(tmpdir(), 'llmbox-bench-util-'));

interface Row {
  setting: string;
  metric: string;
  value: number;
  agreement: number | null;
  seconds: number;
  selectSeconds: number;
  reused: number;
  computed: number;
}

/** A choice instance's predicted option, or a generation's extracted answer. */
const predictions = (r: TaskResult) =>
  r.samples.map((s) =>
    r.method === 'gen'
      ? String(s.filtered_resps[s.filtered_resps.length - 1])
      : // the options' log-likelihoods (a calibrated task's content-free scores follow them)
        String(
          argmax(
            (s.filtered_resps as [number, boolean][])
              .slice(0, ((s.doc as { choices?: string[] }).choices ?? []).length || undefined)
              .map((x) => x[0]),
          ),
        ),
  );

async function run(lm: LocalLM, name: string, setting: string, metric: string, opts: EvaluateOptions, base?: string[]) {
  lm.prefixCache?.clear();
  const t0 = performance.now();
  const [r] = (await evaluate(lm, [name], opts)).results;
  const seconds = (performance.now() - t0) / 1000;
  const mine = predictions(r);
  const row: Row = {
    setting,
    metric,
    value: r.metrics[metric].value,
    agreement: base ? mine.filter((p, i) => p === base[i]).length / mine.length : null,
    seconds,
    selectSeconds: r.icl?.seconds ?? 0,
    reused: r.prefix?.reusedTokens ?? 0,
    computed: r.prefix?.computedTokens ?? 0,
  };
  return { row, predictions: mine, result: r };
}

const lm = new LocalLM(await loadModel('stories260K'));
const rows: Row[] = [];
const shots = 3;
const base = await run(lm, task, `${task} ${shots}-shot random (default)`, 'acc', { limit, shots });
rows.push(base.row);
for (const [setting, icl] of [
  ['first', { strategy: 'first' as const }],
  ['kate, nearest last', { strategy: 'kate' as const }],
  ['kate, nearest first', { strategy: 'kate' as const, kateOrder: 'nearest-first' as const }],
  ['globale', { strategy: 'globale' as const }],
  ['ape', { strategy: 'ape' as const }],
] as const)
  rows.push(
    (await run(lm, task, `${task} ${shots}-shot ${setting}`, 'acc', { limit, shots, icl }, base.predictions)).row,
  );

const gsmBase = await run(lm, 'gsm8k', 'gsm8k cot base (8-shot)', 'exact_match,flexible-extract', {
  limit: gsmLimit,
  maxNewTokens: 128,
});
rows.push(gsmBase.row);
for (const [mode, metric] of [
  ['none', 'exact_match,flexible-extract'],
  ['least-to-most', 'exact_match,flexible-extract'],
  ['pal', 'exact_match,pal'],
] as const)
  rows.push(
    (
      await run(
        lm,
        'gsm8k',
        `gsm8k cot ${mode}`,
        metric,
        { limit: gsmLimit, maxNewTokens: 128, cot: mode },
        gsmBase.predictions,
      )
    ).row,
  );
const sc = await run(lm, 'gsm8k', 'gsm8k cot none, 5 samples (vote)', 'exact_match,flexible-extract', {
  limit: gsmLimit,
  maxNewTokens: 32,
  cot: 'none',
  samples: 5,
});
rows.push(sc.row, {
  ...sc.row,
  setting: '  (samples agreeing with the vote)',
  metric: 'agreement,flexible-extract',
  value: sc.result.metrics['agreement,flexible-extract'].value,
});

const pad = (s: string, n: number) => s.padEnd(n);
console.log(
  `stories260K, ${limit} ${task} instances, ${gsmLimit} GSM8K problems (${lm.describe().prefix_cache ? 'prefix cache on' : 'no prefix cache'})\n`,
);
console.log(
  `${pad('setting', 40)} ${pad('metric', 30)} ${pad('value', 7)} ${pad('agree', 6)} ${pad('wall s', 7)} ${pad('select s', 8)} prefix reused/computed`,
);
for (const r of rows)
  console.log(
    `${pad(r.setting, 40)} ${pad(r.metric, 30)} ${pad(r.value.toFixed(3), 7)} ${pad(r.agreement === null ? '-' : r.agreement.toFixed(3), 6)} ${pad(r.seconds.toFixed(1), 7)} ${pad(r.selectSeconds.toFixed(1), 8)} ${r.reused}/${r.computed}`,
  );
