import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { Template } from '@huggingface/jinja';
import { LlmboxError } from '../../errors.js';
import { exactMatch, f1Score, normalizeNumber, lastNumber } from '../metrics/index.js';
import { choiceTask, generationTask } from './define.js';
import { readRows, readRowsSync, type DataRow } from '../../data/read.js';
import type { Doc, GenerationSpec, Task, TaskGroup } from './types.js';

/**
 * A task written as data, in the shape of an lm-evaluation-harness task config (YAML or JSON): files
 * for the evaluation and few-shot splits, Jinja templates for the prompt, the choices and the
 * target. For datasets that need no code:
 *
 *   task: my_qa
 *   dataset_path: my_qa            # a folder under the data root (else files sit beside the config)
 *   test_split: test.jsonl
 *   fewshot_split: train.jsonl
 *   output_type: multiple_choice
 *   doc_to_text: "Question: {{question}}\nAnswer:"
 *   doc_to_choice: "{{ choices.text }}"
 *   doc_to_target: "{{ label }}"
 *
 * `doc_to_choice` is a field holding a list, a Jinja expression giving a list (`{{ ... }}`), or a
 * list of templates (literal choices are templates without variables); `doc_to_target` renders to
 * the gold index, or to text matched against the choices (multiple choice) or used as the reference
 * (generation). `include` names a config whose fields this one extends. Files are JSON, JSON Lines,
 * CSV, TSV or Parquet. The configs shipped in the repository's tasks/ folder are built-in tasks.
 */
export interface TaskConfig {
  task: string;
  include?: string;
  dataset_path?: string;
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
  /** Multiple choice: a content-free context (e.g. "Answer:") whose option log-likelihoods calibrate (acc_mi). */
  calibration?: string;
  generation_kwargs?: { until?: string | string[]; max_gen_toks?: number };
  /** Generation: exact_match (SQuAD normalisation, default), f1, or number (last number, numerically equal). */
  metric?: 'exact_match' | 'f1' | 'number';
  /** A group this task belongs to (reported one by one and together, each task counting once unless group_aggregate is micro). */
  group?: string;
  group_aggregate?: 'micro' | 'macro';
  version?: number;
  /** Asks to replace the built-in task of the same name (otherwise an error). */
  replace_builtin?: boolean;
}

type Check = (v: unknown) => boolean;
const isStr: Check = (v) => typeof v === 'string';
const oneOf =
  (...xs: string[]): Check =>
  (v) =>
    typeof v === 'string' && xs.includes(v);
const strOrList: Check = (v) => typeof v === 'string' || (Array.isArray(v) && v.length > 0 && v.every(isStr));

/** Every field a config may have, with the type it must have: "3" is not 3, and a field llmbox does not know is an error, not ignored. */
const FIELDS: Record<keyof TaskConfig, [Check, string]> = {
  task: [
    (v) => typeof v === 'string' && /^[A-Za-z0-9][\w.-]*$/.test(v),
    'a name of letters, digits, _ . - (no path separators)',
  ],
  include: [isStr, 'a config file path'],
  dataset_path: [
    (v) => typeof v === 'string' && /^[\w.-]+(\/[\w.-]+)*$/.test(v) && !v.includes('..'),
    'a folder under the data root',
  ],
  test_split: [isStr, 'a data file path'],
  fewshot_split: [isStr, 'a data file path'],
  output_type: [oneOf('multiple_choice', 'generate_until'), 'multiple_choice or generate_until'],
  doc_to_text: [isStr, 'a Jinja template'],
  doc_to_choice: [strOrList, 'a field name or a list of Jinja templates'],
  doc_to_target: [isStr, 'a Jinja template'],
  description: [isStr, 'a string'],
  num_fewshot: [(v) => Number.isInteger(v) && (v as number) >= 0, 'a non-negative integer'],
  fewshot_order: [oneOf('first', 'random'), 'first or random'],
  target_delimiter: [isStr, 'a string'],
  fewshot_delimiter: [isStr, 'a string'],
  method: [oneOf('ppl', 'prob'), 'ppl or prob'],
  calibration: [isStr, 'a content-free context such as "Answer:"'],
  group: [(v) => typeof v === 'string' && /^[A-Za-z0-9][\w.-]*$/.test(v), 'a group name'],
  group_aggregate: [oneOf('micro', 'macro'), 'micro or macro'],
  generation_kwargs: [
    (v) => !!v && typeof v === 'object' && !Array.isArray(v),
    'an object with until and max_gen_toks',
  ],
  metric: [oneOf('exact_match', 'f1', 'number'), 'exact_match, f1 or number'],
  version: [(v) => typeof v === 'number' && Number.isFinite(v), 'a number'],
  replace_builtin: [(v) => typeof v === 'boolean', 'true or false'],
};

function checkFields(cfg: Record<string, unknown>, path: string): void {
  if (!cfg || typeof cfg !== 'object' || Array.isArray(cfg))
    throw new LlmboxError('a task config must be a mapping of fields', { file: path });
  for (const [key, value] of Object.entries(cfg)) {
    const spec = FIELDS[key as keyof TaskConfig];
    if (!spec)
      throw new LlmboxError(`unknown field ${key}`, {
        file: path,
        field: key,
        fix: `the fields are ${Object.keys(FIELDS).join(', ')}`,
      });
    if (!spec[0](value))
      throw new LlmboxError(`field ${key} must be ${spec[1]}, got ${JSON.stringify(value)?.slice(0, 60)}`, {
        file: path,
        field: key,
      });
  }
  const g = cfg.generation_kwargs as Record<string, unknown> | undefined;
  for (const [key, value] of Object.entries(g ?? {})) {
    const ok =
      key === 'until'
        ? strOrList(value)
        : key === 'max_gen_toks'
          ? Number.isInteger(value) && (value as number) > 0
          : false;
    if (!ok)
      throw new LlmboxError(
        key === 'until' || key === 'max_gen_toks'
          ? `generation_kwargs.${key} must be ${key === 'until' ? 'a string or a list of strings' : 'a positive integer'}`
          : `unknown field generation_kwargs.${key}`,
        { file: path, field: `generation_kwargs.${key}` },
      );
  }
}

/** Names a Jinja template reads from the row: free identifiers, less loop/set variables and Jinja's globals. */
const GLOBALS = new Set([
  'range',
  'namespace',
  'dict',
  'loop',
  'raise_exception',
  'true',
  'false',
  'none',
  'True',
  'False',
  'None',
  'strftime_now',
]);
export function templateVariables(t: Template): string[] {
  const used = new Set<string>(),
    bound = new Set<string>();
  const bind = (n: unknown) => walkNames(n, (name) => bound.add(name));
  const visit = (n: unknown): void => {
    if (Array.isArray(n)) return n.forEach(visit);
    if (!n || typeof n !== 'object') return;
    const node = n as Record<string, unknown>;
    switch (node.type) {
      case 'Identifier':
        used.add(node.value as string);
        return;
      case 'MemberExpression':
        visit(node.object);
        if (node.computed) visit(node.property);
        return;
      case 'For':
        bind(node.loopvar);
        break;
      case 'Set':
        bind(node.assignee);
        break;
      case 'Macro':
        bind(node.name);
        bind(node.args);
        break;
      case 'FilterExpression':
      case 'TestExpression':
        visit(node.operand);
        if (node.filter && (node.filter as Record<string, unknown>).type === 'CallExpression')
          visit((node.filter as Record<string, unknown>).args);
        return;
      case 'KeywordArgumentExpression':
        visit(node.value);
        return;
    }
    // An operator is a token (`in`, `not`), not a name the template reads.
    for (const [k, v] of Object.entries(node))
      if (k !== 'type' && k !== 'loopvar' && k !== 'assignee' && k !== 'operator') visit(v);
  };
  visit(t.parsed);
  return [...used].filter((n) => !bound.has(n) && !GLOBALS.has(n));
}

function walkNames(n: unknown, f: (name: string) => void): void {
  if (Array.isArray(n)) return n.forEach((x) => walkNames(x, f));
  if (!n || typeof n !== 'object') return;
  const node = n as Record<string, unknown>;
  if (node.type === 'Identifier') return f(node.value as string);
  for (const v of Object.values(node)) walkNames(v, f);
}

/** Reads a task config and its data files into a Task (the rows are rendered when first read). */
export async function loadTaskConfig(path: string): Promise<Task> {
  const cfg = readTaskConfig(path);
  const task = taskFromConfig(cfg, path);
  // A config with its files beside it is checked now: its files, their first rows, its templates.
  if (!cfg.dataset_path) await task.prepare!('.');
  return task;
}

/** A config file's fields, each checked, with the fields of the configs it includes below its own. */
export function readTaskConfig(path: string, seen: string[] = []): Partial<TaskConfig> {
  const file = resolve(path);
  if (seen.includes(file))
    throw new LlmboxError(`include cycle: ${[...seen, file].join(' -> ')}`, { file, field: 'include' });
  let cfg: Record<string, unknown>;
  try {
    const text = readFileSync(file, 'utf8');
    cfg = /\.ya?ml$/i.test(file) ? parseYaml(text) : JSON.parse(text);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT')
      throw new LlmboxError('no such task config', {
        file,
        fix: 'check the path (configs end in .yaml, .yml or .json)',
      });
    throw new LlmboxError(`cannot parse the config: ${(e as Error).message}`, { file });
  }
  checkFields(cfg, file);
  if (typeof cfg.include !== 'string') return cfg as Partial<TaskConfig>;
  const parentFile = resolve(dirname(file), cfg.include);
  const parent = readTaskConfig(parentFile, [...seen, file]);
  const { include: _, ...own } = cfg as Partial<TaskConfig>;
  const merged: Partial<TaskConfig> = { ...parent, ...own };
  if (parent.generation_kwargs || own.generation_kwargs)
    merged.generation_kwargs = { ...parent.generation_kwargs, ...own.generation_kwargs };
  // Files named by the included config stay where it meant them (beside it).
  if (!merged.dataset_path)
    for (const k of ['test_split', 'fewshot_split'] as const)
      if (own[k] === undefined && parent[k] !== undefined)
        merged[k] = relative(dirname(file), resolve(dirname(parentFile), parent[k]!));
  return merged;
}

/** The expression of a template that is one `{{ ... }}` and nothing else. */
function singleExpression(src: string): string | undefined {
  const inner = /^\s*\{\{([\s\S]*)\}\}\s*$/.exec(src)?.[1];
  return inner !== undefined && !inner.includes('{{') && !inner.includes('}}') ? inner : undefined;
}

/** A Task from checked config fields; its data is read by prepare(), relative to the config or under the data root. */
export function taskFromConfig(cfg: Partial<TaskConfig>, path: string): Task {
  const need = (key: keyof TaskConfig) => {
    if (cfg[key] === undefined)
      throw new LlmboxError(`missing field ${key}`, {
        file: path,
        field: key,
        fix: 'see TaskConfig in lib/eval/tasks/declarative.ts',
      });
  };
  (['task', 'test_split', 'output_type', 'doc_to_text', 'doc_to_target'] as const).forEach(need);
  if (cfg.output_type === 'multiple_choice') need('doc_to_choice');
  const c = cfg as TaskConfig;
  const template = (src: string, field: string) => {
    try {
      return new Template(src);
    } catch (e) {
      throw new LlmboxError(`bad template: ${(e as Error).message}`, { file: path, field });
    }
  };
  const text = template(c.doc_to_text, 'doc_to_text'),
    target = template(c.doc_to_target, 'doc_to_target');
  const choiceTemplates = Array.isArray(c.doc_to_choice)
    ? c.doc_to_choice.map((t) => template(t, 'doc_to_choice'))
    : undefined;
  // "{{ expr }}": a Jinja expression whose value is the list, read back as JSON.
  const expr = typeof c.doc_to_choice === 'string' ? singleExpression(c.doc_to_choice) : undefined;
  const choiceExpr = expr !== undefined ? template(`{{ (${expr}) | tojson }}`, 'doc_to_choice') : undefined;
  const configDir = dirname(resolve(path));
  const targetExpr = singleExpression(c.doc_to_target);
  const targetList = targetExpr !== undefined ? template(`{{ (${targetExpr}) | tojson }}`, 'doc_to_target') : undefined;

  // Jinja renders an unknown variable as nothing; here a template reading a field the row lacks is an error.
  const variables = new Map<Template, string[]>(
    [text, target, ...(choiceTemplates ?? []), choiceExpr, targetList]
      .filter((t): t is Template => t !== undefined)
      .map((t) => [t, templateVariables(t)]),
  );
  const toDoc = (row: DataRow, i: number, file: string, split: string): Doc => {
    const render = (t: Template, field: string) => {
      const missing = variables.get(t)!.filter((v) => !(v in row));
      if (missing.length) {
        throw new LlmboxError(
          `row ${i + 1}: ${field} reads ${missing.map((m) => `{{ ${m} }}`).join(', ')}, which the row does not have`,
          { file, field, fix: `the row's fields are ${Object.keys(row).join(', ')}` },
        );
      }
      try {
        return t.render(row);
      } catch (e) {
        throw new LlmboxError(`row ${i + 1}: ${field} failed: ${(e as Error).message}`, { file, field });
      }
    };
    const query = render(text, 'doc_to_text');
    const tgt = render(target, 'doc_to_target').trim();
    const id = `${c.task}-${split}-${i}`;
    if (c.output_type === 'generate_until') {
      // A target expression giving a list is the set of acceptable answers (aliases); the first is shown in examples.
      const list = targetList ? (JSON.parse(render(targetList, 'doc_to_target')) as unknown) : undefined;
      const refs = Array.isArray(list) && list.length ? list.map(String) : [tgt];
      return { id, query, target: refs[0], references: refs };
    }
    let choices: unknown = choiceTemplates
      ? choiceTemplates.map((t) => render(t, 'doc_to_choice'))
      : choiceExpr
        ? JSON.parse(render(choiceExpr, 'doc_to_choice'))
        : row[c.doc_to_choice as string];
    if (!Array.isArray(choices) || !choices.every((x) => typeof x === 'string' || typeof x === 'number')) {
      throw new LlmboxError(
        `row ${i + 1}: doc_to_choice should give a list of strings, got ${JSON.stringify(choices)?.slice(0, 80)}`,
        { file, field: String(c.doc_to_choice) },
      );
    }
    choices = (choices as (string | number)[]).map(String);
    const list = choices as string[];
    const gold = /^\d+$/.test(tgt) && Number(tgt) < list.length ? Number(tgt) : list.indexOf(tgt);
    if (gold < 0)
      throw new LlmboxError(
        `row ${i + 1}: doc_to_target gave ${JSON.stringify(tgt)}, neither an index nor one of the choices`,
        { file, field: 'doc_to_target' },
      );
    return { id, query, question: query.replace(/\s*Answer:\s*$/, ''), choices: list, gold };
  };
  // Rows are rendered when first read: `--limit 5` renders five instances, not the whole file. The
  // first row is rendered at once, so a template that fails everywhere fails at load.
  const docsOf = (file: string, rows: DataRow[], split: string): Doc[] => {
    const docs = new Array<Doc | undefined>(rows.length);
    const at = (i: number) => (docs[i] ??= toDoc(rows[i], i, file, split));
    if (rows.length) at(0);
    const index = (key: string | symbol) =>
      typeof key === 'string' && /^\d+$/.test(key) && Number(key) < rows.length ? Number(key) : -1;
    // Array methods ask `has` before `get`: unrendered rows must not look like holes.
    return new Proxy(docs as Doc[], {
      get: (target, key, receiver) => (index(key) >= 0 ? at(index(key)) : Reflect.get(target, key, receiver)),
      has: (target, key) => index(key) >= 0 || Reflect.has(target, key),
    });
  };
  // Files live beside the config, or (dataset_path) in the task's folder under the data root given at evaluation.
  const prepared = new Map<string, Record<'eval' | 'fewshot', Doc[]>>();
  const folderOf = (dataDir: string) => (c.dataset_path ? resolve(dataDir) : configDir);
  const files = (base: string) => ({
    eval: resolve(base, c.test_split),
    fewshot: c.fewshot_split ? resolve(base, c.fewshot_split) : undefined,
  });
  const keep = (base: string, rows: (file: string) => DataRow[]) => {
    const f = files(base);
    const evalDocs = docsOf(f.eval, rows(f.eval), 'eval');
    if (!evalDocs.length) throw new LlmboxError('test_split has no rows', { file: f.eval, field: 'test_split' });
    const fewshot = f.fewshot ? docsOf(f.fewshot, rows(f.fewshot), 'fewshot') : evalDocs;
    const docs = { eval: evalDocs, fewshot };
    prepared.set(base, docs);
    return docs;
  };
  // Parquet is read asynchronously (prepare, which evaluation awaits); other formats also on first use.
  const prepare = async (dataDir: string) => {
    const base = folderOf(dataDir);
    if (prepared.has(base)) return;
    const f = files(base);
    const rows = new Map<string, DataRow[]>();
    for (const file of [f.eval, f.fewshot]) if (file) rows.set(file, await readRows(file));
    keep(base, (file) => rows.get(file)!);
  };
  const loadSplit = (dataDir: string, split: 'eval' | 'fewshot') => {
    const base = folderOf(dataDir);
    return (prepared.get(base) ?? keep(base, readRowsSync))[split];
  };

  const common = {
    name: c.task,
    version: c.version ?? 1,
    dataFolder: c.dataset_path ?? '.',
    prepare,
    loadSplit,
    defaultShots: c.num_fewshot ?? 0,
    fewshotOrder: c.fewshot_order ?? 'random',
    targetDelimiter: c.target_delimiter ?? ' ',
    fewshotDelimiter: c.fewshot_delimiter ?? '\n\n',
    ...(c.description !== undefined ? { description: () => c.description! } : {}),
    ...(c.calibration !== undefined ? { calibration: c.calibration } : {}),
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
      until:
        typeof c.generation_kwargs?.until === 'string'
          ? [c.generation_kwargs.until]
          : (c.generation_kwargs?.until ?? ['\n\n']),
      maxNewTokens: c.generation_kwargs?.max_gen_toks ?? 256,
      filters: metric === 'number' ? { 'flexible-extract': lastNumber } : { none: (t) => t.trim() },
      score,
    },
  });
}

/** Registers a config-defined task under its name, so `-d path/to/task.json` works like a built-in. */
export async function registerTaskConfig(path: string, registry: Record<string, Task>): Promise<string> {
  const cfg = readTaskConfig(path);
  const task = await loadTaskConfig(path);
  const earlier = fromConfig.get(task.name);
  if (registry[task.name] && earlier !== resolve(path) && !cfg.replace_builtin) {
    throw new LlmboxError(`task ${task.name} already exists${earlier ? ` (from ${earlier})` : ' (built in)'}`, {
      file: path,
      field: 'task',
      fix: 'give the config another name, or add "replace_builtin": true to replace it',
    });
  }
  registry[task.name] = task;
  fromConfig.set(task.name, resolve(path));
  return task.name;
}

/** Which config file registered each config-defined task. */
const fromConfig = new Map<string, string>();

/** The config files of a folder and its subfolders, sorted; `_*` files are bases for `include`, not tasks. */
export function configFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return (readdirSync(dir, { recursive: true }) as string[])
    .filter((f) => /\.(ya?ml|json)$/i.test(f) && !basename(f).startsWith('_'))
    .sort()
    .map((f) => join(dir, f));
}

/**
 * The task configs in a folder and its subfolders (files named `_*.yaml` are bases for `include`,
 * not tasks), with the groups their `group` fields form, in file order.
 */
export function configTasks(dir: string): { tasks: Task[]; groups: TaskGroup[] } {
  const tasks: Task[] = [];
  const groups = new Map<string, TaskGroup>();
  for (const path of configFiles(dir)) {
    const cfg = readTaskConfig(path);
    tasks.push(taskFromConfig(cfg, path));
    if (!cfg.group) continue;
    const g = groups.get(cfg.group) ?? { name: cfg.group, tasks: [], aggregate: cfg.group_aggregate ?? 'macro' };
    g.tasks.push(cfg.task!);
    groups.set(cfg.group, g);
  }
  return { tasks, groups: [...groups.values()] };
}
