import { dirname, resolve } from 'node:path';
import { Template } from '@huggingface/jinja';
import { LlmboxError } from '../../errors.js';
import { exactMatch, f1Score, normalizeNumber, lastNumber } from '../metrics/index.js';
import { choiceTask, generationTask } from './define.js';
import { readJson } from './files.js';
import { readRows } from '../../data/read.js';
import type { Doc, GenerationSpec, Task } from './types.js';

/**
 * A task written as data, in the shape of an lm-evaluation-harness task config (JSON instead of
 * YAML): files for the evaluation and few-shot splits, Jinja templates for the prompt, the choices
 * and the target. For datasets that need no code:
 *
 *   { "task": "my_qa", "test_split": "test.jsonl", "fewshot_split": "train.jsonl",
 *     "output_type": "multiple_choice", "doc_to_text": "Question: {{question}}\nAnswer:",
 *     "doc_to_choice": "choices", "doc_to_target": "{{label}}", "num_fewshot": 0 }
 *
 * `doc_to_choice` is a field holding a list, or a list of templates; `doc_to_target` renders to the
 * gold index, or to text matched against the choices (multiple choice) or used as the reference
 * (generation). Files are JSON, JSON Lines, CSV, TSV or Parquet, found relative to the config.
 */
export interface TaskConfig {
  task: string;
  test_split: string;
  fewshot_split?: string;
  output_type: 'multiple_choice' | 'generate_until';
  doc_to_text: string;
  doc_to_choice?: string | string[];
  doc_to_target: string;
  description?: string;
  num_fewshot?: number;
  fewshot_order?: 'first' | 'random';
  target_delimiter?: string;
  fewshot_delimiter?: string;
  /** Multiple choice: `ppl` (default) or `prob`. */
  method?: 'ppl' | 'prob';
  generation_kwargs?: { until?: string[]; max_gen_toks?: number };
  /** Generation: exact_match (SQuAD normalisation, default), f1, or number (last number, numerically equal). */
  metric?: 'exact_match' | 'f1' | 'number';
  version?: number;
}

type Row = Record<string, unknown>;

/** Reads a task config and its data (eagerly: Parquet is read asynchronously) into a Task. */
export async function loadTaskConfig(path: string): Promise<Task> {
  const cfg = readJson(path) as Partial<TaskConfig>;
  const need = (key: keyof TaskConfig) => {
    if (cfg[key] === undefined) throw new LlmboxError(`missing field ${key}`, { file: path, field: key, fix: 'see TaskConfig in lib/eval/tasks/declarative.ts' });
  };
  (['task', 'test_split', 'output_type', 'doc_to_text', 'doc_to_target'] as const).forEach(need);
  if (cfg.output_type !== 'multiple_choice' && cfg.output_type !== 'generate_until') {
    throw new LlmboxError(`output_type should be multiple_choice or generate_until, got ${JSON.stringify(cfg.output_type)}`, { file: path, field: 'output_type' });
  }
  if (cfg.output_type === 'multiple_choice') need('doc_to_choice');
  const c = cfg as TaskConfig;
  const template = (src: string, field: string) => {
    try {
      return new Template(src);
    } catch (e) {
      throw new LlmboxError(`bad template: ${(e as Error).message}`, { file: path, field });
    }
  };
  const text = template(c.doc_to_text, 'doc_to_text'), target = template(c.doc_to_target, 'doc_to_target');
  const choiceTemplates = Array.isArray(c.doc_to_choice) ? c.doc_to_choice.map((t) => template(t, 'doc_to_choice')) : undefined;
  const base = dirname(resolve(path));

  const toDoc = (row: Row, i: number, file: string, split: string): Doc => {
    const render = (t: Template, field: string) => {
      try {
        return t.render(row);
      } catch (e) {
        throw new LlmboxError(`row ${i + 1}: ${field} failed: ${(e as Error).message}`, { file, field });
      }
    };
    const query = render(text, 'doc_to_text');
    const tgt = render(target, 'doc_to_target').trim();
    const id = `${c.task}-${split}-${i}`;
    if (c.output_type === 'generate_until') return { id, query, target: tgt, references: [tgt] };
    let choices: unknown = choiceTemplates ? choiceTemplates.map((t) => render(t, 'doc_to_choice')) : row[c.doc_to_choice as string];
    if (!Array.isArray(choices) || !choices.every((x) => typeof x === 'string' || typeof x === 'number')) {
      throw new LlmboxError(`row ${i + 1}: doc_to_choice should give a list of strings, got ${JSON.stringify(choices)?.slice(0, 80)}`, { file, field: String(c.doc_to_choice) });
    }
    choices = (choices as (string | number)[]).map(String);
    const list = choices as string[];
    const gold = /^\d+$/.test(tgt) && Number(tgt) < list.length ? Number(tgt) : list.indexOf(tgt);
    if (gold < 0) throw new LlmboxError(`row ${i + 1}: doc_to_target gave ${JSON.stringify(tgt)}, neither an index nor one of the choices`, { file, field: 'doc_to_target' });
    return { id, query, question: query.replace(/\s*Answer:\s*$/, ''), choices: list, gold };
  };
  const load = async (rel: string, split: string) => {
    const file = resolve(base, rel);
    return (await readRows(file)).map((row, i) => toDoc(row, i, file, split));
  };
  const evalDocs = await load(c.test_split, 'eval');
  const fewshotDocs = c.fewshot_split ? await load(c.fewshot_split, 'fewshot') : evalDocs;

  const common = {
    name: c.task,
    version: c.version ?? 1,
    dataFolder: '.',
    loadSplit: (_: string, split: 'eval' | 'fewshot') => (split === 'eval' ? evalDocs : fewshotDocs),
    defaultShots: c.num_fewshot ?? 0,
    fewshotOrder: c.fewshot_order ?? 'random',
    targetDelimiter: c.target_delimiter ?? ' ',
    fewshotDelimiter: c.fewshot_delimiter ?? '\n\n',
    ...(c.description !== undefined ? { description: () => c.description! } : {}),
  };
  if (c.output_type === 'multiple_choice') return choiceTask({ ...common, defaultMethod: c.method ?? 'ppl' });
  const metric = c.metric ?? 'exact_match';
  const score: GenerationSpec['score'] =
    metric === 'number'
      ? (a, d) => ({ exact_match: normalizeNumber(a) === normalizeNumber(d.references![0]) ? 1 : 0 })
      : metric === 'f1'
        ? (a, d) => ({ f1: f1Score(a, d.references!), exact_match: exactMatch(a, d.references!) })
        : (a, d) => ({ exact_match: exactMatch(a, d.references!) });
  return generationTask({
    ...common,
    generation: {
      until: c.generation_kwargs?.until ?? ['\n\n'],
      maxNewTokens: c.generation_kwargs?.max_gen_toks ?? 256,
      filters: metric === 'number' ? { 'flexible-extract': lastNumber } : { none: (t) => t.trim() },
      score,
    },
  });
}

/** Registers a config-defined task under its name, so `-d path/to/task.json` works like a built-in. */
export async function registerTaskConfig(path: string, registry: Record<string, Task>): Promise<string> {
  const task = await loadTaskConfig(path);
  registry[task.name] = task;
  return task.name;
}
