import { join } from 'node:path';
import { LlmboxError } from '../../errors.js';
import { finalQuestion, leastToMost, qaLine } from '../cot/least-to-most.js';
import { PAL_HEADER, palAnswer, sameAnswer } from '../cot/pal.js';
import { lastNumber, normalizeNumber, regexFilter } from '../metrics/index.js';
import { generationTask } from './define.js';
import { field, isString, readJsonl } from '../../data/files.js';
import { LEAST_TO_MOST_EXEMPLARS, PAL_EXEMPLARS } from './gsm8k-exemplars.js';
import type { Doc, Task } from './types.js';
import { DEFAULTS } from '../../util/defaults.js';

export const numberMatch = (answer: string, doc: Doc) => ({
  exact_match: normalizeNumber(answer) === normalizeNumber(doc.references![0]) ? 1 : 0,
});

interface Row {
  question: string;
  solution: string;
  answer: string;
}

/** The problems of a split with their worked solutions and final answers (after "####"). */
function rows(dataDir: string, split: 'eval' | 'fewshot'): Row[] {
  const file = join(dataDir, split === 'eval' ? 'test.jsonl' : 'train.jsonl');
  return readJsonl(file).map((row, i) => {
    const question = field(row, 'question', isString, 'a string', file, i);
    const solution = field(row, 'answer', isString, 'a worked solution ending in "#### N"', file, i);
    const m = /####\s*(.+)$/.exec(solution.trim());
    if (!m) throw new LlmboxError(`row ${i + 1}: field answer has no "#### N" final answer`, { file, field: 'answer' });
    return { question, solution, answer: m[1].trim() };
  });
}

/** The training rows an exemplar set was written on, checked to still have the answers the exemplars reach. */
function exemplarRows(dataDir: string, used: { row: number; answer: string }[]): Row[] {
  const train = rows(dataDir, 'fewshot');
  return used.map(({ row, answer }) => {
    const r = train[row];
    if (!r || normalizeNumber(r.answer) !== answer)
      throw new LlmboxError(`training row ${row + 1} is not the problem llmbox's GSM8K exemplars were written for`, {
        file: join(dataDir, 'train.jsonl'),
        fix: 'use the original GSM8K train.jsonl (openai/grade-school-math)',
      });
    return r;
  });
}

const UNTIL = ['Question:', '</s>', '<|im_end|>', '\n\n'];
const id = (split: string, i: number) => `gsm8k-${split}-${i}`;
const common = { name: 'gsm8k', dataFolder: 'gsm8k' } as const;

/**
 * GSM8K (Cobbe et al. 2021), 8-shot chain of thought: "Question: ...\nAnswer:" followed by a worked
 * solution ending in "#### N" (lm-eval's gsm8k format). The exemplars are fixed (the first eight
 * training problems) so every instance shares one few-shot prefix. Answers are read two ways, as in
 * lm-eval: strict (the number after "####") and flexible (the last number in the text).
 */
/** The eight fixed exemplars' format, each example followed by its worked solution or its bare answer. */
const eightShot = (example: (r: Row) => string) => ({
  ...common,
  defaultShots: 8,
  fewshotOrder: 'first' as const,
  loadSplit: (dataDir: string, split: 'eval' | 'fewshot') =>
    rows(dataDir, split).map((r, i) => ({
      id: id(split, i),
      query: `Question: ${r.question}\nAnswer:`,
      target: example(r),
      references: [r.answer],
    })),
});

export const gsm8k: Task = generationTask({
  ...eightShot((r) => r.solution),
  generation: {
    until: UNTIL,
    maxNewTokens: 256,
    filters: { 'strict-match': regexFilter(/#### (-?[0-9.,]+)/), 'flexible-extract': lastNumber },
    score: numberMatch,
  },
  cot: { default: 'base', variants: { none: () => direct, 'least-to-most': () => l2m, pal: () => pal } },
});

/** No chain of thought: the same eight exemplars answered with their number alone. */
const direct: Task = generationTask({
  ...eightShot((r) => r.answer),
  generation: {
    until: ['\n', ...UNTIL],
    maxNewTokens: 32,
    filters: { 'flexible-extract': lastNumber },
    score: numberMatch,
  },
});

/** The text before each instance of a mode (its exemplars), kept on the docs as BBH keeps its prompt. */
const withPrompt = (docs: Doc[], prompt: string): Doc[] => docs.map((d) => ({ ...d, extra: { prompt } }));
const promptOf = (doc: Doc) => doc.extra!.prompt as string;

const decomposition = (question: string, subs: string[]) =>
  `To answer the question "${finalQuestion(question)}", we need to know:${subs.map((s) => ` "${s}"`).join(',')}.`;

/** Least-to-most: decompose (four exemplars), then answer the sub-questions and the question in order. */
const l2m: Task = generationTask({
  ...common,
  description: promptOf,
  loadSplit(dataDir, split) {
    const ex = exemplarRows(dataDir, LEAST_TO_MOST_EXEMPLARS);
    const decompose = LEAST_TO_MOST_EXEMPLARS.map(
      (e, i) =>
        `Q: ${ex[i].question}\nA: ${decomposition(
          ex[i].question,
          e.steps.map((s) => s[0]),
        )}\n\n`,
    ).join('');
    const solvePrefix = LEAST_TO_MOST_EXEMPLARS.map((e, i) => {
      const chain = [...e.steps, [finalQuestion(ex[i].question), e.final]].map(([q, a]) => qaLine(q, a));
      return `Problem: ${ex[i].question}\n\n${chain.join('\n\n')}\n\n`;
    }).join('');
    return rows(dataDir, split).map((r, i) => ({
      id: id(split, i),
      query: `Q: ${r.question}\nA: To answer the question "${finalQuestion(r.question)}", we need to know:`,
      references: [r.answer],
      extra: { prompt: decompose, solvePrefix, problem: r.question },
    }));
  },
  generation: {
    until: ['\n'],
    maxNewTokens: 256,
    filters: {
      'strict-match': regexFilter(/The answer is (-?[0-9.,]+)/, { last: true }),
      'flexible-extract': lastNumber,
    },
    score: numberMatch,
    solve: (lm, requests, docs) =>
      leastToMost({
        solvePrefix: docs[0].extra!.solvePrefix as string,
        problem: (d) => ({ problem: d.extra!.problem as string, question: finalQuestion(d.extra!.problem as string) }),
        maxSubquestions: DEFAULTS.cot.maxSubquestions,
        until: ['\n\n', '\nQ:', 'Problem:', '</s>', '<|im_end|>'],
      })(lm, requests, docs),
  },
});

/** PAL: eight programs, then the instance's question and the header of its solution(). */
const pal: Task = generationTask({
  ...common,
  description: promptOf,
  loadSplit(dataDir, split) {
    const ex = exemplarRows(dataDir, PAL_EXEMPLARS);
    const prompt = PAL_EXEMPLARS.map((e, i) => `Question: ${ex[i].question}\n\n${PAL_HEADER}${e.body}\n\n\n`).join('');
    const docs = rows(dataDir, split).map((r, i) => ({
      id: id(split, i),
      query: `Question: ${r.question}\n\n${PAL_HEADER}`,
      references: [r.answer],
    }));
    return withPrompt(docs, prompt);
  },
  generation: {
    until: ['\n\n\n', 'Question:', '</s>', '<|im_end|>'],
    maxNewTokens: 256,
    filters: { pal: (text) => palAnswer(text) },
    score: (answer, doc) => ({ exact_match: sameAnswer(answer, doc.references![0]) ? 1 : 0 }),
    executesCode: true,
  },
});
