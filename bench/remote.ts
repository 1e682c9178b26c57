/**
 * Remote evaluation end to end, side by side in one run: HellaSwag on stories260K in-process, then
 * through `llmbox serve` (loopback), through a proxy that answers some requests with 429 and 500,
 * and as a run that is cut off midway and resumed. Every remote run is compared with the
 * in-process scores; the request counts show what was retried and what was not sent again.
 *
 *   npx tsx bench/remote.ts [--limit 1000]
 */
import { fileURLToPath } from 'node:url';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initEngine } from '../lib/engine/index.js';
import { evaluate, type EvalRun } from '../lib/eval/evaluate.js';
import { LocalLM } from '../lib/eval/local.js';
import { remoteModel } from '../lib/eval/remote/index.js';
import { loadModel } from '../lib/models/load.js';
import { serve } from '../lib/serve/server.js';
import { faultyProxy } from '../tests/helpers/http.js';

const STORIES = fileURLToPath(new URL('../../shared/models/stories260K', import.meta.url));
const limitArg = process.argv.indexOf('--limit');
const LIMIT = limitArg >= 0 ? Number(process.argv[limitArg + 1]) : 1000;

/** Identical metrics and greedy flags; the largest relative log-likelihood difference. */
function compare(a: EvalRun, b: EvalRun): { same: boolean; maxRel: number } {
  let same =
    JSON.stringify(Object.entries(a.results[0].metrics).map(([k, v]) => [k, v.value])) ===
    JSON.stringify(Object.entries(b.results[0].metrics).map(([k, v]) => [k, v.value]));
  let maxRel = 0;
  a.results[0].samples.forEach((s, i) => {
    (s.filtered_resps as [number, boolean][]).forEach(([ll, g], j) => {
      const [ll2, g2] = (b.results[0].samples[i].filtered_resps as [number, boolean][])[j];
      if (g !== g2) same = false;
      maxRel = Math.max(maxRel, Math.abs(ll - ll2) / Math.max(1, Math.abs(ll2)));
    });
  });
  return { same, maxRel };
}

async function main() {
  await initEngine({});
  const lm = await loadModel(STORIES);
  const server = await serve(lm, { port: 0 });
  const upstream = server.url.replace(/\/v1$/, '');
  const rows: string[] = [];
  const row = (
    label: string,
    run: EvalRun,
    local: EvalRun,
    seconds: number,
    stats: { requests: number; cached: number; attempts: number; retries: number },
    extra = '',
  ) => {
    const c = compare(run, local);
    const m = run.results[0].metrics;
    rows.push(
      `| ${label} | ${m.acc.value.toFixed(4)} | ${m.acc_norm.value.toFixed(4)} | ${c.same ? 'yes' : 'NO'} | ${c.maxRel.toExponential(1)} | ${stats.requests} | ${stats.cached} | ${stats.attempts} | ${stats.retries} | ${seconds.toFixed(1)} | ${extra} |`,
    );
  };
  const timed = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
    const t0 = performance.now();
    const r = await f();
    return [r, (performance.now() - t0) / 1000];
  };
  const opts = { limit: LIMIT };
  const [local, tLocal] = await timed(() => evaluate(new LocalLM(lm), ['hellaswag'], opts));
  rows.push(
    `| in-process | ${local.results[0].metrics.acc.value.toFixed(4)} | ${local.results[0].metrics.acc_norm.value.toFixed(4)} | - | - | - | - | - | - | ${tLocal.toFixed(1)} | |`,
  );

  const direct = remoteModel(`${server.url}::stories260K`, { requestCache: false, concurrency: 8 });
  const [run, t] = await timed(() => evaluate(direct, ['hellaswag'], opts));
  row('llmbox serve', run, local, t, direct.stats);

  const faults = await faultyProxy(upstream, (n) => (n % 10 === 3 ? 429 : n % 20 === 7 ? 500 : null));
  const faulty = remoteModel(`${faults.url}/v1::stories260K`, { requestCache: false, concurrency: 8 });
  const [frun, tf] = await timed(() => evaluate(faulty, ['hellaswag'], opts));
  row('serve behind 10% 429 + 5% 500', frun, local, tf, faulty.stats, `${faults.counts.faults} faults injected`);
  await faults.close();

  const cache = mkdtempSync(join(tmpdir(), 'llmbox-bench-cache-')),
    out = mkdtempSync(join(tmpdir(), 'llmbox-bench-out-'));
  let cutAfter = Math.floor((LIMIT * 4) / 2);
  const cut = await faultyProxy(upstream, (n) => (n >= cutAfter ? 400 : null));
  const first = remoteModel(`${cut.url}/v1::stories260K`, { requestCache: cache, concurrency: 8 });
  const [err, t1] = await timed(() =>
    evaluate(first, ['hellaswag'], { ...opts, outputDir: out }).then(
      () => null,
      (e: Error) => e,
    ),
  );
  await new Promise((r) => setTimeout(r, 200));
  const answered = cut.counts.ok;
  rows.push(
    `| run cut off (400s after ${cutAfter} requests) | - | - | - | - | ${first.stats.requests} | ${first.stats.cached} | ${first.stats.attempts} | ${first.stats.retries} | ${t1.toFixed(1)} | ${err ? 'stopped' : 'finished?'}: ${answered} answered |`,
  );
  cutAfter = Infinity;
  const before = cut.counts.requests;
  const second = remoteModel(`${cut.url}/v1::stories260K`, { requestCache: cache, concurrency: 8 });
  const [rrun, t2] = await timed(() => evaluate(second, ['hellaswag'], { ...opts, outputDir: out }));
  const resent = cut.counts.requests - before - (LIMIT * 4 - answered);
  row(
    'resumed',
    rrun,
    local,
    t2,
    second.stats,
    `${rrun.results[0].resumed} instances from the resume state; requests sent again: ${resent}`,
  );
  await cut.close();
  await server.close();

  console.log(`HellaSwag, ${LIMIT} instances (${LIMIT * 4} option requests), stories260K`);
  console.log(
    '| run | acc | acc_norm | same as in-process | max rel dLL | requests | from cache | HTTP attempts | retries | s | notes |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
}

await main();
