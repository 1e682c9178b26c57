// Needs ../shared/data (the benchmark and training data sets): scripts/test.mjs skips this file without it.
import { describe, expect, it } from 'vitest';
import { evaluate } from '../lib/eval/evaluate.js';
import { LlmboxError } from '../lib/errors.js';
import { ScriptedLM } from './helpers/scripted.js';
import { SHARED_DATA, tmp } from './helpers/models.js';
import { readJsonl } from '../lib/data/files.js';
import { TASKS } from '../lib/eval/tasks/index.js';
import { instanceQuery } from '../lib/eval/methods/prompt.js';

const DATA = SHARED_DATA;

describe('evaluation pipeline with a scripted model', () => {
  const humaneval = readJsonl(`${DATA}/humaneval/HumanEval.jsonl`).slice(0, 3) as Record<string, string>[];

  it('HumanEval: canonical solutions pass, pass@k over samples follows the unbiased estimator', async () => {
    const byPrompt = new Map(humaneval.map((r) => [r.prompt, r.canonical_solution]));
    const oracle = new ScriptedLM((r) => byPrompt.get(r.context)!);
    const run = await evaluate(oracle, ['humaneval'], { limit: 3 });
    expect(run.results[0].metrics['pass@1'].value).toBe(1);
    // 2 of 5 samples correct per problem: pass@1 = 2/5, pass@5 = 1.
    const partly = new ScriptedLM((r, call) => (call % 5 < 2 ? byPrompt.get(r.context)! : '    return None\n'));
    const sampled = await evaluate(partly, ['humaneval'], { limit: 3, samples: 5, temperature: 0.8 });
    expect(sampled.results[0].metrics['pass@1'].value).toBeCloseTo(0.4, 12);
    expect(sampled.results[0].metrics['pass@5'].value).toBe(1);
    expect(partly.seen.every((r) => r.temperature === 0.8 && r.seed !== undefined)).toBe(true);
    expect(new Set(partly.seen.map((r) => r.seed)).size).toBe(15);
  });

  it('GSM8K: strict and flexible extraction, and majority vote over samples', async () => {
    const answers = TASKS.gsm8k
      .loadSplit(`${DATA}/gsm8k`, 'eval')
      .slice(0, 4)
      .map((d) => d.references![0]);
    let doc = -1;
    const exact = new ScriptedLM(() => {
      doc++;
      // Two answers in lm-eval's "#### N" form, two only as the last number.
      return doc % 2 === 0 ? ` Some steps.\n#### ${answers[doc]}` : ` So the total is ${answers[doc]}.`;
    });
    const run = await evaluate(exact, ['gsm8k'], { limit: 4, shots: 2 });
    expect(run.results[0].metrics['exact_match,strict-match'].value).toBe(0.5);
    expect(run.results[0].metrics['exact_match,flexible-extract'].value).toBe(1);
    expect(exact.seen[0].until).toContain('Question:');
    expect(exact.seen[0].context.split('\n\nQuestion: ')).toHaveLength(3);
    // 3 of 5 samples right, 2 wrong: the vote picks the right one.
    const voter = new ScriptedLM((_, call) => `#### ${call % 5 < 3 ? answers[Math.floor(call / 5)] : '7'}`);
    const voted = await evaluate(voter, ['gsm8k'], { limit: 4, shots: 0, samples: 5, temperature: 0.7 });
    expect(voted.results[0].metrics['exact_match,strict-match'].value).toBe(1);
    const outvoted = new ScriptedLM((_, call) => `#### ${call % 5 < 2 ? answers[Math.floor(call / 5)] : '7'}`);
    expect(
      (await evaluate(outvoted, ['gsm8k'], { limit: 4, shots: 0, samples: 5, temperature: 0.7 })).results[0].metrics[
        'exact_match,strict-match'
      ].value,
    ).toBe(0);
  });

  it('MMLU: an oracle that prefers the gold letter scores 1, per subject and for the group', async () => {
    const gold = new Map<string, number>();
    for (const t of ['mmlu_anatomy', 'mmlu_virology']) {
      for (const d of TASKS[t].loadSplit(`${DATA}/mmlu`, 'eval').slice(0, 5))
        gold.set(instanceQuery(TASKS[t], 'prob', d), d.gold!);
    }
    const oracle = new ScriptedLM(
      () => '',
      (r) => {
        const query = [...gold.keys()].find((q) => r.context.endsWith(q))!;
        return 'ABCD'.indexOf(r.continuation.trim()) === gold.get(query) ? 0 : -5;
      },
    );
    const run = await evaluate(oracle, ['mmlu_anatomy', 'mmlu_virology'], { limit: 5 });
    for (const r of run.results) expect(r.metrics.acc.value).toBe(1);
  });

  it('FLORES: a model that returns the reference gets BLEU 100; an empty one 0', async () => {
    const refs = TASKS['flores200_eng_Latn-fra_Latn'].loadSplit(`${DATA}/flores200`, 'eval').slice(0, 5);
    const byQuery = new Map(refs.map((d) => [d.query, d.references![0]]));
    const perfect = new ScriptedLM((r) => ' ' + byQuery.get(r.context)!);
    expect(
      (await evaluate(perfect, ['flores200_eng_Latn-fra_Latn'], { limit: 5 })).results[0].metrics.bleu.value,
    ).toBeCloseTo(100, 8);
    const empty = new ScriptedLM(() => '');
    expect((await evaluate(empty, ['flores200_eng_Latn-fra_Latn'], { limit: 5 })).results[0].metrics.bleu.value).toBe(
      0,
    );
  });

  it('refuses, before any request, a method the task lacks or the model cannot serve', async () => {
    const chatOnly = new ScriptedLM(
      () => '#### 1',
      () => 0,
      {
        loglikelihood: 'chat endpoints return no prompt log-probabilities',
        loglikelihood_rolling: 'no prompt log-probabilities',
      },
    );
    // gsm8k alone runs; hellaswag after it is refused before gsm8k sends anything.
    const err = await evaluate(chatOnly, ['gsm8k', 'hellaswag'], { limit: 2, shots: 0 }).catch((e) => e);
    expect(err).toBeInstanceOf(LlmboxError);
    expect(err.message).toMatch(
      /cannot run hellaswag with method ppl: chat endpoints return no prompt log-probabilities/,
    );
    expect(err.field).toBe('--method');
    expect(chatOnly.seen).toHaveLength(0);
    // ARC offers prob too, which also needs log-likelihoods: the fix names no usable method.
    expect((await evaluate(chatOnly, ['arc_easy'], { limit: 2 }).catch((e) => e)).fix).toMatch(/offers only ppl\/prob/);
    // A method the task does not have is an error, not a silent switch to its default.
    const any = new ScriptedLM(() => '');
    const wrong = await evaluate(any, ['gsm8k'], { limit: 2, method: 'ppl' }).catch((e) => e);
    expect(wrong.message).toMatch(/task gsm8k has no method ppl/);
    expect(wrong.fix).toMatch(/use gen/);
    expect((await evaluate(chatOnly, ['gsm8k'], { limit: 2, shots: 0 })).results[0].n).toBe(2);
  });

  it('two evaluations into one --output take turns on a task instead of both writing its resume state', async () => {
    const order: string[] = [];
    const model = (name: string) =>
      new ScriptedLM(
        () => '',
        (r) => {
          order.push(name);
          return -r.continuation.length;
        },
      );
    const dir = tmp();
    const [a, b] = await Promise.all([
      evaluate(model('a'), ['arc_easy'], { limit: 12, chunkSize: 2, outputDir: dir }),
      evaluate(model('b'), ['arc_easy'], { limit: 12, chunkSize: 2, outputDir: dir }),
    ]);
    expect(a.results[0].metrics.acc.value).toBe(b.results[0].metrics.acc.value);
    // Without the lock their chunks interleave (each awaits the model between chunks).
    const firstB = order.indexOf('b');
    expect(firstB === -1 || order.slice(firstB).every((x) => x === 'b')).toBe(true);
    expect(order.filter((x) => x === 'a').length).toBeGreaterThan(0);
  });
});
