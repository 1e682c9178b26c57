// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
// Slow suite (the demo tasks scored on full data and on the shipped slices): npm run test:fast leaves it out.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { evaluate } from '../lib/eval/evaluate.js';
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

  it("the demo's data slices give the demo's scores: the same as the first 200 rows of the full data", async () => {
    const lm = new LocalLM(await loadModel('stories260K'));
    const demo = await evaluate(lm, DEMO_TASKS, { limit: 200, dataDir: join(ROOT, 'data', 'demo') });
    const full = await evaluate(lm, DEMO_TASKS, { limit: 200, dataDir: SHARED_DATA });
    expect(demo.results.map((r) => r.n)).toEqual([5, 200, 200, 200, 200]);
    expect(demo.results.map((r) => r.metrics)).toEqual(full.results.map((r) => r.metrics));
  });
});
