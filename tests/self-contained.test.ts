// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { evaluate } from '../lib/eval/evaluate.js';
import { TASKS } from '../lib/eval/tasks/index.js';
import { LocalLM } from '../lib/eval/local.js';
import { loadModel } from '../lib/models/load.js';
import { resolveModelDir } from '../lib/util/paths.js';
import { SHARED_DATA, STORIES } from './helpers/models.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DEMO_TASKS = ['tinystories_ppl', 'arc_easy', 'hellaswag', 'piqa', 'winogrande'];

/** What a fresh clone has without ../shared: the demo model and the demo's data slices. */
describe('the repository runs its main job by itself', () => {
  it('ships stories260K: the name resolves to the repository copy, identical to the shared one', async () => {
    expect(resolveModelDir('stories260K')).toBe(join(ROOT, 'models', 'stories260K'));
    expect(STORIES).toBe(join(ROOT, 'models', 'stories260K'));
    const [mine, shared] = [
      await loadModel('stories260K'),
      await loadModel(join(SHARED_DATA, '../models/stories260K')),
    ];
    for (const [name, t] of shared.model.params) expect(mine.model.params.get(name)!.dataSync()).toEqual(t.dataSync());
  });

  it("the demo's data slices are the first 200 instances of the full data, so they give the demo's scores", async () => {
    const demoDir = join(ROOT, 'data', 'demo');
    for (const name of DEMO_TASKS) {
      const task = TASKS[name];
      const full = task.loadSplit(join(SHARED_DATA, task.dataFolder), 'eval').slice(0, 200);
      expect(task.loadSplit(join(demoDir, task.dataFolder), 'eval'), name).toEqual(full);
    }
    // And the same pipeline scores them the same (a few instances: identical documents are the proof).
    const lm = new LocalLM(await loadModel('stories260K'));
    const demo = await evaluate(lm, DEMO_TASKS, { limit: 20, dataDir: demoDir });
    const full = await evaluate(lm, DEMO_TASKS, { limit: 20, dataDir: SHARED_DATA });
    expect(demo.results.map((r) => r.metrics)).toEqual(full.results.map((r) => r.metrics));
  });
});
