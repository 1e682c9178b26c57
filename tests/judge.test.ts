import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { evaluate } from '../lib/eval/evaluate.js';
import { JudgeCache } from '../lib/eval/judge/ask.js';
import { combineOrders, fillTemplate, parseRating, parseVerdict } from '../lib/eval/judge/verdicts.js';
import type { GenerateUntilRequest } from '../lib/eval/lm.js';
import type { Message } from '../lib/data/records.js';
import { LlmboxError } from '../lib/errors.js';
import { tmp } from './helpers/models.js';
import { ScriptedLM } from './helpers/scripted.js';

// Judge replies are cached under LLMBOX_CACHE_DIR: each run of this file starts with an empty one.
process.env.LLMBOX_CACHE_DIR = tmp('llmbox-judge-home-');

describe("MT-Bench's reading of judgments", () => {
  it('reads ratings as FastChat does: [[n]], else [n], else -1', () => {
    expect(parseRating('The answer is fine. Rating: [[8]]')).toBe(8);
    expect(parseRating('Rating: [[7.5]] and later [[2]]')).toBe(7.5);
    expect(parseRating('I give it [6] overall')).toBe(6);
    expect(parseRating('Rating: 9/10')).toBe(-1);
  });
  it('reads verdicts and combines both answer orders conservatively', () => {
    expect(parseVerdict('... [[B]]')).toBe('B');
    expect(parseVerdict('... [[C]]')).toBe('tie');
    expect(parseVerdict('no verdict')).toBe('error');
    expect(combineOrders('A', 'B')).toBe('win');
    expect(combineOrders('B', 'A')).toBe('loss');
    expect(combineOrders('A', 'A')).toBe('tie'); // position bias: the judge always picks the first
    expect(combineOrders('error', 'B')).toBe('tie');
    expect(fillTemplate('[Q] {question} [A] {answer} {other}', { question: 'q?', answer: 'a.' })).toBe(
      '[Q] q? [A] a. {other}',
    );
  });
});

/** A data folder in MT-Bench's layout with two questions and short judge prompts (the real ones are in ../shared). */
function craftedBench(): string {
  const root = tmp('llmbox-judge-');
  const dir = join(root, 'mt_bench');
  mkdirSync(dir);
  const lines = (rs: object[]) => rs.map((r) => JSON.stringify(r)).join('\n') + '\n';
  writeFileSync(
    join(dir, 'question.jsonl'),
    lines([
      { question_id: 81, category: 'writing', turns: ['Write a haiku.', 'Now in French.'] },
      { question_id: 111, category: 'math', turns: ['What is 2+2?', 'And 3+3?'] },
    ]),
  );
  writeFileSync(
    join(dir, 'vicuna_bench_question.jsonl'),
    lines([{ question_id: 1, category: 'generic', turns: ['Hi?'] }]),
  );
  writeFileSync(
    join(dir, 'reference_answer_gpt-4.jsonl'),
    lines([{ question_id: 111, choices: [{ index: 0, turns: ['4', '6'] }] }]),
  );
  const p = (name: string, template: string) => ({ name, system_prompt: `SYS ${name}`, prompt_template: template });
  writeFileSync(
    join(dir, 'judge_prompts.jsonl'),
    lines([
      p('single-v1', 'Q: {question} A: {answer}'),
      p('single-math-v1', 'Q: {question} REF: {ref_answer_1} A: {answer}'),
      p('single-v1-multi-turn', 'Q1: {question_1} A1: {answer_1} Q2: {question_2} A2: {answer_2}'),
      p('single-math-v1-multi-turn', 'REF2: {ref_answer_2} Q2: {question_2} A2: {answer_2}'),
      p('pair-v2', 'Q: {question} A: {answer_a} B: {answer_b}'),
    ]),
  );
  return root;
}

describe('judged tasks', () => {
  it('answers both turns in one conversation, grades each turn, uses the reference for math, and averages valid ratings', async () => {
    const data = craftedBench();
    const answerer = new ScriptedLM((r: GenerateUntilRequest) => {
      const turns = r.messages!.filter((m) => m.role === 'user').length;
      // the second turn sees the first question and answer
      if (turns === 2) expect(r.messages![1]).toMatchObject({ role: 'assistant' });
      return turns === 1 ? 'first answer' : 'second answer';
    });
    const asked: Message[][] = [];
    const judge = new ScriptedLM((r) => {
      asked.push(r.messages!);
      const user = r.messages![1].content;
      if (user.startsWith('REF2')) return 'Fine. Rating: [[9]]';
      if (user.includes('REF: 4')) return 'Rating: [[6]]';
      if (user.startsWith('Q1')) return 'I cannot decide.'; // no rating: left out, counted
      return 'Rating: [[8]]';
    });
    Object.assign(judge, { modelId: 'scripted-judge' });
    const run = await evaluate(answerer, ['mt_bench'], { dataDir: data, judge });
    const [writing, math] = run.results[0].samples.map((s) => s.metrics);
    expect(writing).toMatchObject({ score_turn1: 8, score: 8, score_writing: 8, judge_failures: 1 });
    expect(writing.score_turn2).toBeUndefined();
    expect(math).toMatchObject({ score_turn1: 6, score_turn2: 9, score: 7.5, score_math: 7.5, judge_failures: 0 });
    const m = run.results[0].metrics;
    expect(m.score.value).toBeCloseTo(7.75, 12);
    expect(m.score_turn1.value).toBe(7);
    expect(m.score_turn2.value).toBe(9);
    expect(asked.map((a) => a[0].content).sort()).toEqual(
      ['SYS single-math-v1', 'SYS single-math-v1-multi-turn', 'SYS single-v1', 'SYS single-v1-multi-turn'].sort(),
    );
    expect(JSON.parse(run.results[0].samples[0].filtered_resps[0] as string)).toEqual([
      'first answer',
      'second answer',
    ]);
    expect(run.fingerprint.judge?.model).toBe('scripted-judge');
  });

  it('compares with the reference answer in both orders for the pairwise win rate', async () => {
    const data = craftedBench();
    // The judge prefers whichever answer is "4", in either position.
    const judge = new ScriptedLM((r) => (r.messages![1].content.includes('A: 4 ') ? '[[A]]' : '[[B]]'));
    Object.assign(judge, { modelId: 'pair-judge' });
    const right = await evaluate(new ScriptedLM(() => 'the answer is 5'), ['mt_bench_pairwise'], {
      dataDir: data,
      judge,
    });
    expect(right.results[0].samples).toHaveLength(1);
    expect(right.results[0].metrics).toMatchObject({ win_rate: { value: 0 }, loss: { value: 1 } });
    const positional = new ScriptedLM(() => '[[A]]');
    Object.assign(positional, { modelId: 'positional-judge' });
    const tie = await evaluate(new ScriptedLM(() => 'x'), ['mt_bench_pairwise'], { dataDir: data, judge: positional });
    expect(tie.results[0].metrics.win_rate.value).toBe(0.5);
  });

  it('refuses to start without a judge', async () => {
    const err = await evaluate(new ScriptedLM(() => ''), ['vicuna_bench'], { dataDir: craftedBench() }).catch((e) => e);
    expect(err).toBeInstanceOf(LlmboxError);
    expect(err.field).toBe('--judge');
  });

  it("keeps the judge's replies: asked once per prompt, across runs", async () => {
    let calls = 0;
    const judge = new ScriptedLM(() => `[[${++calls}]]`);
    const dir = tmp('llmbox-judge-cache-');
    const messages: Message[] = [{ role: 'user', content: 'rate this' }];
    expect(await new JudgeCache(judge, dir).ask(judge, messages, 10)).toBe('[[1]]');
    const again = new JudgeCache(judge, dir);
    expect(await again.ask(judge, messages, 10)).toBe('[[1]]');
    expect(await again.ask(judge, [{ role: 'user', content: 'another' }], 10)).toBe('[[2]]');
    expect(calls).toBe(2);
  });
});
