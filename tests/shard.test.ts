// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import { describe, expect, it } from 'vitest';
import { evaluate, type EvalRun } from '../lib/eval/evaluate.js';
import { LocalLM } from '../lib/eval/local.js';
import { mergeRuns } from '../lib/eval/merge.js';
import { TASKS } from '../lib/eval/tasks/index.js';
import { loadModel } from '../lib/models/load.js';
import { ScriptedLM } from './helpers/scripted.js';
import { SHARED_DATA, STORIES, tmp } from './helpers/models.js';

const DATA = SHARED_DATA;
const values = (run: EvalRun) =>
  run.results.map((r) => Object.fromEntries(Object.entries(r.metrics).map(([k, v]) => [k, [v.value, v.stderr]])));

describe('sharded runs and llmbox merge', () => {
  it('three shards merge to the scores of one unsharded run (per-instance and corpus metrics, groups)', async () => {
    const lm = new LocalLM(await loadModel(STORIES));
    const tasks = ['hellaswag', 'arc_easy'];
    const whole = await evaluate(lm, tasks, { limit: 20 });
    const dirs = [0, 1, 2].map(() => tmp());
    const parts = await Promise.all(
      dirs.map((dir, index) => evaluate(lm, tasks, { limit: 20, shard: { index, count: 3 }, outputDir: dir })),
    );
    expect(parts.map((p) => p.results[0].n)).toEqual([7, 7, 6]);
    expect(parts[1].results[0].samples.map((s) => s.doc_id)).toEqual([1, 4, 7, 10, 13, 16, 19]);
    const merged = mergeRuns(dirs);
    expect(values(merged)).toEqual(values(whole));
    expect(merged.fingerprint.shard).toBeUndefined();
    expect(merged.results.map((r) => r.samples.map((s) => s.doc_id))).toEqual(
      whole.results.map((r) => r.samples.map((s) => s.doc_id)),
    );

    // A corpus metric (BLEU over all instances) and a group's aggregate are recomputed from the joined samples.
    const refs = new Map(
      TASKS['flores200_eng_Latn-fra_Latn']
        .loadSplit(`${DATA}/flores200`, 'eval')
        .slice(0, 9)
        .map((d, i) => [d.query, i % 2 ? ` ${d.references![0]}` : ' le chat']),
    );
    const scripted = new ScriptedLM((r) => [...refs.entries()].find(([q]) => r.context.endsWith(q))?.[1] ?? ' the cat');
    const group = ['flores200'];
    const full = await evaluate(scripted, group, { limit: 9 });
    expect(full.groups[0].tasks).toHaveLength(18);
    const gdirs = [tmp(), tmp()];
    for (const [index, dir] of gdirs.entries())
      await evaluate(scripted, group, { limit: 9, shard: { index, count: 2 }, outputDir: dir });
    const joined = mergeRuns(gdirs);
    expect(values(joined)).toEqual(values(full));
    expect(joined.groups).toEqual(full.groups);
  });

  it('refuses missing shards, shards given twice and shards of other settings', async () => {
    const lm = new ScriptedLM(
      () => '',
      (r) => -r.continuation.length,
    );
    const run = (index: number, extra = {}) => {
      const dir = tmp();
      return evaluate(lm, ['arc_easy'], { limit: 6, shard: { index, count: 3 }, outputDir: dir, ...extra }).then(
        () => dir,
      );
    };
    const [a, b, c] = [await run(0), await run(1), await run(2)];
    expect(() => mergeRuns([a, b])).toThrow(/shards missing: 2 \(of 3\)/);
    expect(() => mergeRuns([a, b, b])).toThrow(/shards missing: 2; given twice: 1 \(of 3\)/);
    const other = await run(2, { seed: 7 });
    expect(() => mergeRuns([a, b, other])).toThrow(/was run with other settings/);
    expect(mergeRuns([c, a, b]).results[0].n).toBe(6);
    const unsharded = tmp();
    await evaluate(lm, ['arc_easy'], { limit: 6, outputDir: unsharded });
    expect(() => mergeRuns([unsharded])).toThrow(/was not sharded/);
  });
});
