import { beforeAll, describe, expect, it } from 'vitest';
import { evaluate } from '../lib/eval/evaluate.js';
import { LocalLM } from '../lib/eval/local.js';
import { passAtK } from '../lib/eval/metrics/index.js';
import { generationTask } from '../lib/eval/tasks/define.js';
import { TASKS } from '../lib/eval/tasks/index.js';
import type { Doc } from '../lib/eval/tasks/types.js';
import { LlmboxError } from '../lib/errors.js';
import { loadModel } from '../lib/models/load.js';
import { STORIES } from './helpers/models.js';
import { ScriptedLM } from './helpers/scripted.js';

describe('self-consistency samples share their prompt', () => {
  let lm: LocalLM;
  beforeAll(async () => {
    lm = new LocalLM(await loadModel(STORIES), { batchSize: 8 });
  });
  const prompt = 'Once upon a time, there was a little girl named Lily. She loved to play';
  const sampled = (seed: number) => ({ context: prompt, until: ['\n'], maxNewTokens: 24, temperature: 0.9, seed });

  it('decodes N samples of one prompt as N rows over one cached prefix, each as it would be alone', async () => {
    const seeds = [11, 12, 13, 14, 15, 16];
    const before = { ...lm.prefixStats! };
    const together = await lm.generateUntil(seeds.map(sampled));
    const after = { ...lm.prefixStats! };
    const promptTokens = lm.encode(prompt).length + 1; // with BOS
    // The prompt (less the token fed with the rows) is computed once and not looked up again per sample.
    expect(after.computedTokens - before.computedTokens).toBe(promptTokens - 1);
    expect(after.reusedTokens - before.reusedTokens).toBe(0);
    const alone: string[] = [];
    for (const s of seeds) alone.push(...(await lm.generateUntil([sampled(s)])));
    expect(together).toEqual(alone);
    // the samples differ from each other (the seeds are per row, not one stream shared by the batch)
    expect(new Set(together).size).toBeGreaterThan(1);
  });

  it('keeps half the window for the prompt when the generation budget is as long as the window', async () => {
    const long = 'Once upon a time, there was a little dog. '.repeat(30);
    expect(lm.encode(long).length).toBeGreaterThan(300);
    const before = lm.truncated;
    const huge = await lm.generateUntil([{ context: long, until: ['\n\n\n'], maxNewTokens: 4000 }]);
    const half = await lm.generateUntil([{ context: long, until: ['\n\n\n'], maxNewTokens: 256 }]);
    // both keep the prompt's last 256 tokens and generate to the end of the 512-token window
    expect(huge).toEqual(half);
    expect(lm.truncated - before).toBe(2);
  });

  it('keeps different prompts and greedy requests apart', async () => {
    const out = await lm.generateUntil([
      sampled(1),
      { ...sampled(1), context: 'The dog' },
      { context: prompt, until: ['\n'], maxNewTokens: 24 },
    ]);
    expect(out[0]).toBe((await lm.generateUntil([sampled(1)]))[0]);
    expect(out[1]).toBe((await lm.generateUntil([{ ...sampled(1), context: 'The dog' }]))[0]);
    expect(out[2]).toBe((await lm.generateUntil([{ context: prompt, until: ['\n'], maxNewTokens: 24 }]))[0]);
  });
});

describe('voting and pass@k', () => {
  const docs: Doc[] = [
    { id: 'a', query: 'a?', references: ['5'] },
    { id: 'b', query: 'b?', references: ['7'] },
  ];
  const register = (name: string, samples?: 'pass@k') =>
    (TASKS[name] = generationTask({
      name,
      dataFolder: '.',
      loadSplit: () => docs,
      generation: {
        until: ['\n'],
        maxNewTokens: 4,
        filters: { none: (t) => t.trim() },
        score: (answer, d) => ({ exact_match: answer === d.references![0] ? 1 : 0 }),
        ...(samples ? { samples } : {}),
      },
    }));

  it('reports how many samples agree with the voted answer', async () => {
    register('sc_vote');
    const answers: Record<string, string[]> = { 'a?': ['5', '5', '3', '5'], 'b?': ['1', '2', '7', '7'] };
    const lm = new ScriptedLM((r, call) => answers[r.context][call % 4]);
    const run = await evaluate(lm, ['sc_vote'], { samples: 4 });
    const r = run.results[0];
    expect(r.samples.map((s) => s.filtered_resps)).toEqual([['5'], ['7']]);
    expect(r.samples.map((s) => s.metrics.agreement)).toEqual([0.75, 0.5]);
    expect(r.metrics.agreement.value).toBeCloseTo(0.625, 12);
    expect(r.metrics.exact_match.value).toBe(1);
  });

  it('gives pass@k for any k up to the samples, and refuses a larger k', async () => {
    register('sc_pass', 'pass@k');
    // a: 2 of 5 samples right; b: none
    const lm = new ScriptedLM((r, call) => (r.context === 'a?' ? ['5', 'x', '5', 'x', 'x'] : ['x'])[call % 5] ?? 'x');
    const run = await evaluate(lm, ['sc_pass'], { samples: 5, passK: [1, 2, 3] });
    const m = run.results[0].samples[0].metrics;
    expect(m['exact_match@2']).toBeCloseTo(passAtK(5, 2, 2), 12);
    expect(m['exact_match@3']).toBeCloseTo(1 - (3 * 2 * 1) / (5 * 4 * 3), 12);
    expect(m['exact_match@5']).toBeUndefined();
    expect(run.results[0].samples[1].metrics['exact_match@3']).toBe(0);
    const err = await evaluate(lm, ['sc_pass'], { samples: 5, passK: [6] }).catch((e) => e);
    expect(err).toBeInstanceOf(LlmboxError);
    expect(err.field).toBe('--pass-k');
  });
});
