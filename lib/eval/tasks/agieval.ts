import { join } from 'node:path';
import { LlmboxError } from '../../errors.js';
import { argmax } from '../../models/sampling.js';
import { normalizeMathAnswer } from '../metrics/index.js';
import { choiceTask, generationTask, LETTERS } from './define.js';
import { readJsonl } from '../../data/files.js';
import type { ChoiceScores, Doc, Task, TaskGroup } from './types.js';

const EN_QA = ['aqua-rat', 'lsat-ar', 'lsat-lr', 'lsat-rc', 'sat-en', 'sat-en-without-passage', 'sat-math'];
const ZH_QA = ['biology', 'chemistry', 'chinese', 'english', 'geography', 'history', 'mathqa', 'physics'].map(
  (s) => `gaokao-${s}`,
);

interface Row {
  passage: string;
  question: string;
  options: string[];
  labels: number[];
  answer: string | null;
}

function rows(file: string): Row[] {
  return readJsonl(file).map((r, i) => {
    const bad = (what: string) => new LlmboxError(`row ${i + 1}: ${what}`, { file });
    if (typeof r.question !== 'string') throw bad('field question should be a string');
    const options = (r.options ?? []) as unknown;
    if (!Array.isArray(options) || !options.every((o) => typeof o === 'string'))
      throw bad('field options should be a list of strings or null');
    const label = r.label === null || r.label === undefined ? [] : Array.isArray(r.label) ? r.label : [r.label];
    // Several correct options come as a list, or as one string of letters ("AD").
    const labels = label.flatMap((l) => [...String(l).replace(/[\s,]/g, '')]).map((l) => LETTERS.indexOf(l));
    if (labels.some((l) => l < 0 || l >= options.length))
      throw bad(`label ${JSON.stringify(r.label)} is not an option letter`);
    return {
      passage: typeof r.passage === 'string' ? r.passage : '',
      question: r.question,
      options,
      labels,
      answer: typeof r.answer === 'string' ? r.answer : r.answer == null ? null : String(r.answer),
    };
  });
}

/** Several correct options (some Gaokao physics and math questions): right when the best-scored one is any of them. */
const anyGold = (s: ChoiceScores, doc: Doc) => {
  const golds = doc.extra!.golds as number[];
  const chars = (doc.choices ?? []).map((c) => Math.max(1, c.length));
  return {
    acc: golds.includes(argmax(s.logprobs)) ? 1 : 0,
    acc_norm: golds.includes(argmax(s.logprobs.map((l, j) => l / chars[j]))) ? 1 : 0,
  };
};

/**
 * AGIEval v1 (Zhong et al. 2023) multiple choice in the authors' zero-shot format, as lm-eval and
 * LLMBox use it: "Q: {passage}{question} Answer Choices: (A)... (B)...\nA: Among A through E, the
 * answer is", the Chinese Gaokao tasks "问题：...选项：...\n答案：从A到D, 我们应选择"; each option
 * (its letter and text) is scored as the continuation.
 */
function mcqTask(subset: string, folder: string, zh: boolean): Task {
  return choiceTask({
    name: `agieval_${subset.replace(/-/g, '_')}`,
    dataFolder: folder,
    methods: ['ppl'],
    loadSplit(dataDir) {
      const file = join(dataDir, `${subset}.jsonl`);
      return rows(file).map((r, i): Doc => {
        if (r.labels.length === 0)
          throw new LlmboxError(`row ${i + 1}: a multiple-choice row needs a label`, { file, field: 'label' });
        const last = LETTERS[Math.max(r.options.length, zh ? 4 : 1) - 1];
        const query = zh
          ? `${r.passage}问题：${r.question} 选项：${r.options.join(' ')}\n答案：从A到${last}, 我们应选择`
          : `${r.passage}Q: ${r.question} Answer Choices: ${r.options.join(' ')}\nA: Among A through ${last}, the answer is`;
        return {
          id: `agieval-${subset}-${i}`,
          query,
          choices: r.options,
          gold: r.labels[0],
          extra: { golds: r.labels },
        };
      });
    },
    ...(subset === 'gaokao-physics' || subset === 'gaokao-mathqa' ? { choiceMetrics: anyGold } : {}),
  });
}

/**
 * AGIEval's cloze tasks (Gaokao math, MATH) in the zero-shot format "Q: {question}\nA: The answer is"
 * ("问题：...\n答案：" in Chinese); the first line generated is compared with the answer after
 * Minerva's normalisation (AGIEval's own post-processing normalises the same way for math).
 */
function clozeTask(subset: string, zh: boolean): Task {
  return generationTask({
    name: `agieval_${subset.replace(/-/g, '_')}`,
    dataFolder: 'agieval_zh',
    loadSplit(dataDir) {
      const file = join(dataDir, `${subset}.jsonl`);
      return rows(file).map((r, i): Doc => {
        if (r.answer === null)
          throw new LlmboxError(`row ${i + 1}: a cloze row needs an answer`, { file, field: 'answer' });
        return {
          id: `agieval-${subset}-${i}`,
          query: zh ? `${r.passage}问题：${r.question}\n答案：` : `${r.passage}Q: ${r.question}\nA: The answer is`,
          references: [r.answer],
        };
      });
    },
    generation: {
      until: ['\n', '</s>', '<|im_end|>'],
      maxNewTokens: 64,
      filters: {
        'first-line': (t) =>
          t
            .trim()
            .replace(/^[:：]\s*/, '')
            .replace(/[.。]$/, ''),
      },
      score: (a, d) => ({ exact_match: normalizeMathAnswer(a) === normalizeMathAnswer(d.references![0]) ? 1 : 0 }),
    },
  });
}

const enTasks = EN_QA.map((s) => mcqTask(s, 'agieval_en', false));
const zhTasks = [...ZH_QA.map((s) => mcqTask(s, 'agieval_zh', true)), clozeTask('gaokao-mathcloze', true)];
export const agievalTasks = [...enTasks, ...zhTasks, clozeTask('math', false)];

const names = (ts: Task[]) => ts.map((t) => t.name);
export const agievalGroups: TaskGroup[] = [
  { name: 'agieval_en', tasks: names(enTasks), aggregate: 'macro' },
  { name: 'agieval_zh', tasks: names(zhTasks), aggregate: 'macro' },
  { name: 'agieval', tasks: names(agievalTasks), aggregate: 'macro' },
];
