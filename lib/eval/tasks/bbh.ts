import { join } from 'node:path';
import { LlmboxError } from '../../errors.js';
import { regexFilter } from '../metrics/index.js';
import { generationTask } from './define.js';
import { field, isArray, isString, readJson, readText } from '../../data/files.js';
import type { Doc, Task, TaskGroup } from './types.js';

export const BBH_TASKS = [
  'boolean_expressions',
  'causal_judgement',
  'date_understanding',
  'disambiguation_qa',
  'dyck_languages',
  'formal_fallacies',
  'geometric_shapes',
  'hyperbaton',
  'logical_deduction_five_objects',
  'logical_deduction_seven_objects',
  'logical_deduction_three_objects',
  'movie_recommendation',
  'multistep_arithmetic_two',
  'navigate',
  'object_counting',
  'penguins_in_a_table',
  'reasoning_about_colored_objects',
  'ruin_names',
  'salient_translation_error_detection',
  'snarks',
  'sports_understanding',
  'temporal_sequences',
  'tracking_shuffled_objects_five_objects',
  'tracking_shuffled_objects_seven_objects',
  'tracking_shuffled_objects_three_objects',
  'web_of_lies',
  'word_sorting',
];

/** The answer after "the answer is", up to the end of its sentence. */
const afterTheAnswerIs = regexFilter(/the answer is (.*?)\.?\s*$/im, { last: true });

/** A prompt file's text after the canary line: the task description and three worked examples. */
function cotPromptOf(dataDir: string, name: string): string {
  const promptFile = join(dataDir, 'cot-prompts', `${name}.txt`);
  const text = readText(promptFile);
  const at = text.indexOf('-----\n');
  if (at < 0) throw new LlmboxError('expected the canary line, "-----", then the prompt', { file: promptFile });
  return text.slice(at + 6).trim() + '\n\n';
}

/**
 * The answer-only prompt of a CoT prompt (the paper's other setting): each worked example's reasoning
 * dropped, "A:" followed by what came after "So the answer is".
 */
export function answerOnlyPrompt(cotPrompt: string): string {
  const [description, ...examples] = cotPrompt.trim().split(/\n\n(?=Q: )/);
  const direct = examples.map((e) => {
    const q = e.slice(0, e.indexOf("\nA: Let's think step by step."));
    const m = /So the answer is ([\s\S]*?)\.?\s*$/.exec(e);
    if (!m || q.length <= 0)
      throw new Error(
        `a BBH exemplar without "A: Let's think step by step." and "So the answer is": ${e.slice(0, 80)}`,
      );
    return `${q}\nA: ${m[1].trim()}`;
  });
  return [description, ...direct].join('\n\n') + '\n\n';
}

/** The examples of a task, each asking `ask` after its input. */
function bbhExamples(dataDir: string, name: string, ask: string, prompt: string): Doc[] {
  const file = join(dataDir, 'bbh', `${name}.json`);
  const data = readJson(file) as Record<string, unknown>;
  const examples = field(data, 'examples', isArray, 'a list of {input, target}', file, 0) as Record<string, unknown>[];
  return examples.map((row, i): Doc => ({
    id: `bbh-${name}-${i}`,
    query: `Q: ${field(row, 'input', isString, 'a string', file, i)}\nA:${ask}`,
    references: [field(row, 'target', isString, 'a string', file, i)],
    extra: { prompt },
  }));
}

const exactTarget = (answer: string, doc: Doc) => ({ exact_match: answer === doc.references![0] ? 1 : 0 });

/**
 * BIG-Bench Hard (Suzgun et al. 2022) with the authors' 3-shot chain-of-thought prompts: the prompt
 * file (task description and three worked "Q: ... A: Let's think step by step." examples) heads
 * every instance, which then asks "Q: {input}\nA: Let's think step by step."; the text after
 * "the answer is" must equal the target exactly. `--cot none` runs the answer-only setting: the
 * same examples without their reasoning, the first line of the output as the answer.
 */
function bbhTask(name: string): Task {
  const base = { name: `bbh_${name}`, dataFolder: 'bbh', description: (doc: Doc) => doc.extra!.prompt as string };
  const direct = generationTask({
    ...base,
    loadSplit: (dataDir) => bbhExamples(dataDir, name, '', answerOnlyPrompt(cotPromptOf(dataDir, name))),
    generation: {
      until: ['\n', '</s>', 'Q:', '<|im_end|>'],
      maxNewTokens: 64,
      filters: { 'first-line': (text) => text.trim().replace(/\.$/, '') },
      score: exactTarget,
    },
  });
  return generationTask({
    ...base,
    loadSplit: (dataDir) => bbhExamples(dataDir, name, " Let's think step by step.", cotPromptOf(dataDir, name)),
    generation: {
      until: ['</s>', 'Q:', '\n\n', '<|im_end|>'],
      maxNewTokens: 256,
      filters: { 'get-answer': afterTheAnswerIs },
      score: exactTarget,
    },
    cot: { default: 'base', variants: { none: () => direct } },
  });
}

export const bbhTasks = BBH_TASKS.map(bbhTask);
export const bbhGroup: TaskGroup = { name: 'bbh', tasks: bbhTasks.map((t) => t.name), aggregate: 'macro' };
