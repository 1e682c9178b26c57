import { join } from 'node:path';
import { LlmboxError } from '../../errors.js';
import { lastBoxed, lastNumber, normalizeMathAnswer } from '../metrics/index.js';
import { numberMatch } from './gsm8k.js';
import { generationTask } from './define.js';
import { field, isString, readDelimited, readJson, readJsonl } from '../../data/files.js';
import type { Doc, Task, TaskGroup } from './types.js';

export const MGSM_LANGUAGES = ['bn', 'de', 'en', 'es', 'fr', 'ja', 'ru', 'sw', 'te', 'th', 'zh'];

/**
 * MGSM (Shi et al. 2023), native chain of thought: the eight exemplars of each language with their
 * own "Question:" and "Step-by-Step Answer:" words; the answer is the last number generated.
 */
function mgsmTask(lang: string): Task {
  const exemplars = (dataDir: string) => {
    const file = join(dataDir, 'mgsm_exemplars.json');
    const all = readJson(file) as { MGSM_EXEMPLARS?: Record<string, Record<string, { q: string; a: string }>> };
    const ex = all.MGSM_EXEMPLARS?.[lang];
    if (!ex) throw new LlmboxError(`no exemplars for language ${lang}`, { file, field: `MGSM_EXEMPLARS.${lang}` });
    return Object.keys(ex)
      .sort((a, b) => Number(a) - Number(b))
      .map((k) => ex[k]);
  };
  // The words before the first colon (ASCII or full-width) of exemplar 1's question and answer.
  const lead = (s: string) => /^(.*?[:：])/.exec(s)?.[1] ?? '';
  return generationTask({
    name: `mgsm_${lang}`,
    dataFolder: 'mgsm',
    defaultShots: 8,
    fewshotOrder: 'first',
    loadSplit(dataDir, split) {
      const ex = exemplars(dataDir);
      if (split === 'fewshot') {
        return ex.map((e, i) => ({
          id: `mgsm-${lang}-ex${i}`,
          query: `${e.q.trim()}\n${lead(e.a)}`,
          target: e.a.slice(lead(e.a).length).trim(),
        }));
      }
      const q = lead(ex[0].q),
        a = lead(ex[0].a);
      const file = join(dataDir, `mgsm_${lang}.tsv`);
      return readDelimited(file, { delimiter: '\t', header: false }).map((row, i): Doc => ({
        id: `mgsm-${lang}-${i}`,
        query: `${q} ${field(row, '0', isString, 'the question (column 1)', file, i)}\n${a}`,
        references: [field(row, '1', isString, 'the numeric answer (column 2)', file, i)],
      }));
    },
    generation: {
      until: ['\n\n', '</s>', '<|im_end|>'],
      maxNewTokens: 256,
      filters: { 'flexible-extract': lastNumber },
      score: numberMatch,
    },
  });
}

export const mgsmTasks = MGSM_LANGUAGES.map(mgsmTask);
export const mgsmGroup: TaskGroup = { name: 'mgsm', tasks: mgsmTasks.map((t) => t.name), aggregate: 'macro' };

/**
 * MATH (Hendrycks et al. 2021): "Problem:\n...\n\nSolution:" with worked solutions as few-shot
 * examples (drawn from the same file, never the instance; the set here has no train split); the
 * last \boxed{} answer is compared after Minerva's normalisation.
 */
export const math = generationTask({
  name: 'math',
  dataFolder: 'math',
  defaultShots: 4,
  loadSplit(dataDir) {
    const file = join(dataDir, 'math_test.llmfoundry.jsonl');
    return readJsonl(file).map((row, i): Doc => ({
      id: `math-${i}`,
      query: `Problem:\n${field(row, 'context', isString, 'the problem text', file, i)}\n\nSolution:`,
      target: field(row, 'chain_of_thought', isString, 'a worked solution', file, i),
      references: [field(row, 'answer', isString, 'the final answer', file, i)],
      extra: { category: row.category },
    }));
  },
  generation: {
    until: ['Problem:', '</s>', '<|im_end|>'],
    maxNewTokens: 512,
    filters: { boxed: lastBoxed },
    score: (answer, doc) => ({
      exact_match: normalizeMathAnswer(answer) === normalizeMathAnswer(doc.references![0]) ? 1 : 0,
    }),
  },
  cot: { default: 'base', variants: { none: () => mathDirect } },
});

/** MATH answered directly: the examples show only their boxed answer. */
const mathDirect: Task = generationTask({
  ...math,
  loadSplit: (dataDir, split) =>
    math.loadSplit(dataDir, split).map((d) => ({ ...d, target: `$\\boxed{${d.references![0]}}$` })),
  generation: { ...math.generation!, until: ['\n', ...math.generation!.until], maxNewTokens: 64 },
  cot: undefined,
});

/**
 * MATH-500 (Lightman et al. 2023): the 500 test problems of "Let's Verify Step by Step", in MATH's
 * format and scoring; few-shot examples are other problems' solutions.
 */
export const math500: Task = generationTask({
  ...math,
  name: 'math500',
  dataFolder: 'math500',
  loadSplit(dataDir) {
    const file = join(dataDir, 'test.jsonl');
    return readJsonl(file).map((row, i): Doc => ({
      id: `math500-${i}`,
      query: `Problem:\n${field(row, 'problem', isString, 'the problem text', file, i)}\n\nSolution:`,
      target: field(row, 'solution', isString, 'a worked solution', file, i),
      references: [field(row, 'answer', isString, 'the final answer', file, i)],
      extra: { subject: row.subject, level: row.level },
    }));
  },
  cot: undefined,
});
