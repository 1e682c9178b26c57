import { existsSync, rmSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { engineInfo } from '../engine/index.js';
import { LlmboxError } from '../errors.js';
import { defaultDataDir } from '../util/paths.js';
import { assertSupports, type LanguageModel, type ModelDescription } from './lm.js';
import { sandboxDescription } from './sandbox.js';
import { scoreChoices } from './methods/choice.js';
import { runGeneration } from './methods/generation.js';
import { instanceQuery, preamble, type Preamble } from './methods/prompt.js';
import { selectExamples, type IclInfo, type IclOptions } from './icl/index.js';
import { withCot } from './cot/index.js';
import { bootstrapStderr, mean, stderrOfMean } from './metrics/index.js';
import { fileTimestamp, PartialResults, sha256, writeResults, writeSamples, type SampleRecord } from './results.js';
import { configFiles, registerTaskConfig } from './tasks/declarative.js';
import { GROUPS, TASKS, type Doc, type Method, type Task } from './tasks/index.js';
import type { CotMode } from './tasks/types.js';
import { DEFAULTS } from '../util/defaults.js';

export interface EvaluateOptions {
  /** Few-shot examples per instance; the task's default when absent. */
  shots?: number;
  /** Evaluate the first N instances only. */
  limit?: number;
  /** Root of the data sets (each task reads its own folder below it). */
  dataDir?: string;
  /** Seed for few-shot draws and sampling. */
  seed?: number;
  /** Scoring method; the task's default when absent. */
  method?: Method;
  /** Generation: samples per instance (majority vote, or pass@k for code), temperature, length cap. */
  samples?: number;
  temperature?: number;
  maxNewTokens?: number;
  /** Code tasks with several samples: the k of pass@k (each at most `samples`; default 1, 5, 10, 100). */
  passK?: number[];
  /** Folder for results_<time>.json, samples_<task>_<time>.jsonl and resume state. */
  outputDir?: string;
  /** Continue an interrupted run from its resume state in outputDir (default true). */
  resume?: boolean;
  /** Instances per model call and per resume checkpoint (default 32). */
  chunkSize?: number;
  onProgress?: (p: Progress) => void;
  /** Model name for the results file. */
  model?: string;
  /** Evaluate only instances i with i % count === index (after `limit`): one machine's part of a run that `llmbox merge` joins. */
  shard?: Shard;
  /** How few-shot examples and the instruction are chosen (KATE, GlobalE, APE); the task's own draw when absent. */
  icl?: IclOptions;
  /** Chain-of-thought mode, for tasks that offer several (`llmbox tasks` lists them); the task's own when absent. */
  cot?: CotMode;
  /** The judge model of LLM-as-judge tasks (MT-Bench, Vicuna bench): any model llmbox can call. */
  judge?: LanguageModel;
}

export interface Shard {
  index: number;
  count: number;
}

export interface Progress {
  task: string;
  done: number;
  total: number;
  /** Instances per second over this run (instances restored from a resume excluded). */
  rate: number;
  etaSeconds: number;
}

export interface MetricValue {
  value: number;
  stderr: number;
}

export interface TaskResult {
  task: string;
  version: number;
  method: Method;
  shots: number;
  n: number;
  /** Hash of every instance's full prompt: changes whenever what the model saw changes. */
  promptHash: string;
  metrics: Record<string, MetricValue>;
  samples: SampleRecord[];
  /** Instances restored from an interrupted run instead of recomputed. */
  resumed: number;
  /** Instances of the task before sharding (n is this run's). */
  total: number;
  /** Requests of this run whose prompt lost its oldest tokens to the context window (too many shots). */
  truncated: number;
  /** Resume state of this task, removed once the run's results are written. */
  resumeFile?: string;
  /** How the examples were chosen (strategies other than the task's own draw). */
  icl?: IclInfo;
  /** The chain-of-thought mode that ran, for tasks that offer several. */
  cot?: CotMode;
  /** Prompt tokens this task's requests took from the prefix cache and computed (local models). */
  prefix?: { reusedTokens: number; computedTokens: number };
}

export interface GroupResult {
  group: string;
  tasks: string[];
  n: number;
  aggregate: 'micro' | 'macro';
  metrics: Record<string, MetricValue>;
}

export interface Fingerprint {
  model: string;
  model_hash: string;
  seed: number;
  limit: number | null;
  tasks: Record<string, { version: number; method: Method; shots: number; prompt_hash: string; cot?: CotMode }>;
  /** This run's slice of the instances; absent for a whole run. */
  shard?: Shard;
  /** How generated code was contained, for tasks that run it. */
  sandbox?: string;
  /** The judge of LLM-as-judge tasks. */
  judge?: ModelDescription;
  lm: ModelDescription;
  backend: string | null;
  native_addon: boolean | null;
}

export interface EvalRun {
  results: TaskResult[];
  groups: GroupResult[];
  fingerprint: Fingerprint;
  files?: { results: string; samples: string[] };
}

export { defaultDataDir } from '../util/paths.js';

/**
 * The names with task config files (`*.yaml`, `*.json`, see declarative.ts) and folders of them
 * loaded, registered and replaced by their task names; tasks and groups pass through.
 */
export async function registerConfigs(names: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const n of names) {
    if (/\.(ya?ml|json)$/i.test(n)) out.push(await registerTaskConfig(n, TASKS));
    else if (!TASKS[n] && !GROUPS[n] && existsSync(n) && statSync(n).isDirectory()) {
      // A folder of configs: each becomes a task, in file order.
      const files = configFiles(n);
      if (!files.length)
        throw new LlmboxError('no task configs (*.yaml, *.yml, *.json) in this folder', {
          file: n,
          field: '--dataset',
        });
      for (const f of files) out.push(await registerTaskConfig(f, TASKS));
    } else out.push(n);
  }
  return out;
}

/** Task names for a list of tasks, groups and task config files, groups expanded in order. */
export async function resolveTasks(names: string[]): Promise<string[]> {
  return expandTasks(await registerConfigs(names));
}

/** Task names for a list of tasks and groups, groups expanded in order. */
export function expandTasks(names: string[]): string[] {
  const out: string[] = [];
  for (const name of names) {
    const group = GROUPS[name];
    const expanded = group ? group.tasks : [name];
    for (const t of expanded) {
      if (!TASKS[t]) {
        throw new LlmboxError(`unknown task ${t}`, {
          field: '--dataset',
          fix: `choose tasks or groups from \`llmbox tasks\` (groups: ${Object.keys(GROUPS).join(', ')})`,
        });
      }
      if (!out.includes(t)) out.push(t);
    }
  }
  return out;
}

function aggregateMetric(task: Task, metric: string, values: number[]): MetricValue {
  if (task.aggregations?.[metric] === 'perplexity') {
    const ppl = (xs: number[]) => Math.exp(-mean(xs));
    return { value: ppl(values), stderr: bootstrapStderr(values, ppl, 100) };
  }
  return { value: mean(values), stderr: stderrOfMean(values) };
}

export function taskMetrics(task: Task, samples: SampleRecord[]): Record<string, MetricValue> {
  const out: Record<string, MetricValue> = {};
  const names = [...new Set(samples.flatMap((s) => Object.keys(s.metrics)))];
  for (const m of names)
    out[m] = aggregateMetric(
      task,
      m,
      samples.map((s) => s.metrics[m]).filter((v) => v !== undefined),
    );
  for (const [m, f] of Object.entries(task.corpus ?? {})) {
    out[m] = { value: f(samples), stderr: bootstrapStderr(samples, f, 100) };
  }
  return out;
}

type RecordFields = Pick<SampleRecord, 'doc' | 'target' | 'arguments' | 'resps' | 'filtered_resps' | 'metrics'>;

/** A per-instance record with lm-eval's hashes of the doc, the prompt and the target. */
function sampleRecord(docId: number, doc: Doc, prompt: string, f: RecordFields): SampleRecord {
  return {
    doc_id: docId,
    doc: f.doc,
    target: f.target,
    arguments: f.arguments,
    resps: f.resps,
    filtered_resps: f.filtered_resps,
    doc_hash: sha256(JSON.stringify(doc)),
    prompt_hash: sha256(prompt),
    target_hash: sha256(f.target),
    metrics: f.metrics,
  };
}

/** The method a task runs with: the asked one (an error when the task has no such method), else the task's default. */
export function methodFor(task: Task, asked: Method | undefined): Method {
  if (asked === undefined) return task.defaultMethod;
  if (!task.methods.includes(asked)) {
    throw new LlmboxError(`task ${task.name} has no method ${asked}`, {
      field: '--method',
      fix: `use ${task.methods.join(' or ')} for ${task.name}, or leave --method out for its default (${task.defaultMethod})`,
    });
  }
  return asked;
}

/** Evaluates one task; with outputDir, finished chunks survive interruption and are not recomputed. */
export async function evaluateTask(
  lm: LanguageModel,
  taskName: string,
  opts: EvaluateOptions = {},
  info: ModelDescription = lm.describe(),
): Promise<TaskResult> {
  if (!TASKS[taskName])
    throw new LlmboxError(`unknown task ${taskName}`, { field: '--dataset', fix: 'run `llmbox tasks` for the list' });
  const task = withCot(TASKS[taskName], opts.cot);
  const cot = TASKS[taskName].cot ? (opts.cot ?? TASKS[taskName].cot!.default) : undefined;
  const method = methodFor(task, opts.method);
  assertSupports(lm, task.name, method, task.methods);
  const dataDir = resolve(opts.dataDir ?? defaultDataDir(), task.dataFolder);
  const shots = opts.shots ?? task.defaultShots;
  await task.prepare?.(dataDir);
  let docs = task.loadSplit(dataDir, 'eval');
  if (!docs.length)
    throw new LlmboxError(`task ${task.name} has no instances`, {
      file: dataDir,
      field: '--dataset',
      fix: "check the task's data files",
    });
  if (opts.limit !== undefined) docs = docs.slice(0, opts.limit);
  const pool = shots > 0 ? task.loadSplit(dataDir, 'fewshot') : [];
  // An instance is never its own example: drawing from the evaluated split leaves one fewer.
  const available = pool.length - (pool.some((d) => d.id === docs[0].id) ? 1 : 0);
  if (shots > available) {
    throw new LlmboxError(`${shots} few-shot examples asked, but ${task.name}'s few-shot pool has ${available}`, {
      field: '--shots',
      fix: `use --shots ${available} or fewer`,
    });
  }
  const seed = opts.seed ?? DEFAULTS.eval.seed;
  const selection = await selectExamples({ lm, task, method, docs, pool, shots, seed, icl: opts.icl });
  // Reuse is counted for the evaluation's own requests (selection's cost is in icl.seconds).
  const before = lm.prefixStats && { ...lm.prefixStats };
  const preambles = docs.map((d, i) => preamble(task, method, d, selection.examples[i], selection.instruction));
  const prompts = docs.map((d, i) => preambles[i].text + instanceQuery(task, method, d));
  const promptHash = sha256(prompts.map(sha256).join('')).slice(0, 16);

  // The same weights prompted as a chat model see other prompts: the template is part of the identity.
  const model = [info.model_hash, info.model_type, info.chat_template ?? null, info.system_prompt ?? null];
  const settings = {
    model,
    task: task.name,
    version: task.version,
    method,
    shots,
    seed,
    limit: opts.limit ?? null,
    samples: opts.samples ?? 1,
    passK: opts.passK ?? null,
    judge: opts.judge ? [opts.judge.modelId, opts.judge.describe().model_hash] : null,
    icl: { strategy: selection.info.strategy, ...selection.info.settings },
    ...(cot ? { cot } : {}),
    temperature: opts.temperature ?? null,
    maxNewTokens: opts.maxNewTokens ?? null,
    promptHash,
    ...(opts.shard ? { shard: opts.shard } : {}),
  };
  const partial = opts.outputDir
    ? new PartialResults(
        join(opts.outputDir, '.llmbox-resume'),
        `${task.name}-${sha256(JSON.stringify(settings)).slice(0, 16)}`,
      )
    : undefined;
  const release = await partial?.lock((pid) =>
    process.stderr.write(
      `llmbox: ${task.name}: another run (pid ${pid}) is writing to ${opts.outputDir}; waiting for it\n`,
    ),
  );
  try {
    const result = await runTask(lm, task, opts, { method, shots, docs, preambles, promptHash, partial });
    const after = lm.prefixStats;
    // Only requests that went through the cache (log-likelihoods) count; generation does not use it.
    if (before && after && after.computedTokens + after.reusedTokens > before.computedTokens + before.reusedTokens)
      result.prefix = {
        reusedTokens: after.reusedTokens - before.reusedTokens,
        computedTokens: after.computedTokens - before.computedTokens,
      };
    if (opts.icl?.strategy) result.icl = selection.info;
    if (cot) result.cot = cot;
    return result;
  } finally {
    release?.();
  }
}

/** The instances of one task not yet done, in chunks, each appended to the resume state as it finishes. */
async function runTask(
  lm: LanguageModel,
  task: Task,
  opts: EvaluateOptions,
  t: {
    method: Method;
    shots: number;
    docs: Doc[];
    preambles: Preamble[];
    promptHash: string;
    partial: PartialResults | undefined;
  },
): Promise<TaskResult> {
  const { method, shots, docs, preambles, promptHash, partial } = t;
  const truncatedBefore = lm.truncated ?? 0;
  if (opts.resume === false) partial?.reset();
  const done = partial ? partial.load() : new Map<number, SampleRecord>();
  const resumed = done.size;
  // Prompts (and their few-shot draws) are built for every instance first, so a shard's are those of the whole run.
  const mine = docs.map((_, i) => i).filter((i) => !opts.shard || i % opts.shard.count === opts.shard.index);
  const todo = mine.filter((i) => !done.has(i));
  const chunk = opts.chunkSize ?? DEFAULTS.eval.chunkSize;
  const started = Date.now();
  let computed = 0;
  for (let at = 0; at < todo.length; at += chunk) {
    const ids = todo.slice(at, at + chunk);
    const chunkDocs = ids.map((i) => docs[i]);
    const chunkPreambles = ids.map((i) => preambles[i]);
    const records: SampleRecord[] = [];
    if (method === 'rolling') {
      const lls = await lm.loglikelihoodRolling(chunkDocs.map((d) => d.query));
      lls.forEach((ll, j) => {
        const d = chunkDocs[j];
        records.push(
          sampleRecord(ids[j], d, d.query, {
            doc: { id: d.id, query: d.query.slice(0, 200) },
            target: '',
            arguments: { gen_args_0: { arg_0: d.query, arg_1: null } },
            resps: [[ll]],
            // log-likelihood, words and UTF-8 bytes: what word/byte perplexity and bits per byte weigh by.
            filtered_resps: [ll, d.query.split(/\s+/).length, Buffer.byteLength(d.query)],
            metrics: {},
          }),
        );
      });
    } else if (method === 'gen') {
      const gen = await runGeneration(lm, task, chunkDocs, chunkPreambles, opts);
      gen.forEach((g, j) => {
        const d = chunkDocs[j];
        records.push(
          sampleRecord(ids[j], d, g.context, {
            doc: { id: d.id, query: d.query, references: d.references },
            target: d.references?.[0] ?? '',
            arguments: {
              gen_args_0: {
                arg_0: g.context,
                arg_1: {
                  until: task.generation!.until,
                  max_gen_toks: opts.maxNewTokens ?? task.generation!.maxNewTokens,
                },
              },
            },
            resps: [g.outputs],
            filtered_resps: Object.values(g.answers),
            metrics: g.metrics,
          }),
        );
      });
    } else {
      (await scoreChoices(lm, task, method, chunkDocs, chunkPreambles)).forEach((s, j) => {
        const d = chunkDocs[j];
        records.push(
          sampleRecord(ids[j], d, s.requests[0]?.context ?? '', {
            doc: { id: d.id, query: d.query, choices: d.choices },
            target: String(d.gold ?? ''),
            arguments: Object.fromEntries(
              s.requests.map((r, k) => [`gen_args_${k}`, { arg_0: r.context, arg_1: r.continuation }]),
            ),
            resps: s.results.map((r) => [[r.logprob, r.isGreedy]]),
            filtered_resps: s.results.map((r) => [r.logprob, r.isGreedy]),
            metrics: s.metrics,
          }),
        );
      });
    }
    partial?.append(records);
    for (const r of records) done.set(r.doc_id, r);
    computed += records.length;
    const rate = computed / Math.max(1e-3, (Date.now() - started) / 1000);
    opts.onProgress?.({
      task: task.name,
      done: done.size,
      total: mine.length,
      rate,
      etaSeconds: (mine.length - done.size) / rate,
    });
  }
  const samples = mine.map((i) => done.get(i)!);
  const truncated = (lm.truncated ?? 0) - truncatedBefore;
  if (truncated) {
    const why =
      shots > 0
        ? `with ${shots} shots; fewer --shots keep them whole`
        : 'the instances alone are longer than the window';
    process.stderr.write(
      `llmbox: warning: ${task.name}: ${truncated} prompt(s) were longer than the model's context window and lost their oldest tokens (${why})\n`,
    );
  }
  return {
    task: task.name,
    version: task.version,
    method,
    shots,
    n: samples.length,
    total: docs.length,
    truncated,
    promptHash,
    metrics: taskMetrics(task, samples),
    samples,
    resumed,
    resumeFile: partial?.file,
  };
}

export function groupResults(results: TaskResult[], names: string[]): GroupResult[] {
  const out: GroupResult[] = [];
  for (const name of names) {
    const group = GROUPS[name];
    if (!group) continue;
    const members = results.filter((r) => group.tasks.includes(r.task));
    const shared = Object.keys(members[0]?.metrics ?? {}).filter((m) => members.every((r) => r.metrics[m]));
    const metrics: Record<string, MetricValue> = {};
    const n = members.reduce((a, r) => a + r.n, 0);
    for (const m of shared) {
      // micro: each instance counts once (lm-eval's MMLU); macro: each task counts once. The
      // stderr combines the members' as independent estimates with the same weights.
      const w = members.map((r) => (group.aggregate === 'micro' ? r.n / n : 1 / members.length));
      metrics[m] = {
        value: members.reduce((a, r, i) => a + w[i] * r.metrics[m].value, 0),
        stderr: Math.sqrt(members.reduce((a, r, i) => a + (w[i] * r.metrics[m].stderr) ** 2, 0)),
      };
    }
    out.push({ group: name, tasks: members.map((r) => r.task), n, aggregate: group.aggregate, metrics });
  }
  return out;
}

/** lm-eval's metric keys: "acc,none" and "acc_stderr,none"; "exact_match,strict-match" and its stderr. */
function lmEvalMetrics(metrics: Record<string, MetricValue>): Record<string, number | string> {
  const out: Record<string, number | string> = {};
  for (const [key, { value, stderr }] of Object.entries(metrics)) {
    const [m, filter = 'none'] = key.split(',');
    out[`${m},${filter}`] = value;
    out[`${m}_stderr,${filter}`] = Number.isFinite(stderr) ? stderr : 'N/A';
  }
  return out;
}

/**
 * Evaluates a model on tasks and groups. With outputDir, writes lm-evaluation-harness-compatible
 * results_<time>.json and samples_<task>_<time>.jsonl atomically, and resumes interrupted runs.
 */
export async function evaluate(lm: LanguageModel, names: string[], opts: EvaluateOptions = {}): Promise<EvalRun> {
  const started = Date.now();
  names = await registerConfigs(names);
  const taskNames = expandTasks(names);
  const tooLarge = opts.passK?.find((k) => k > (opts.samples ?? 1));
  if (tooLarge !== undefined)
    throw new LlmboxError(`pass@${tooLarge} needs at least ${tooLarge} samples, and ${opts.samples ?? 1} are drawn`, {
      field: '--pass-k',
      fix: `use --samples ${tooLarge} or more, or k values up to ${opts.samples ?? 1}`,
    });
  // Every task's CoT mode and method are checked against the model, and the code sandbox where tasks run code, before the first request.
  const tasks = taskNames.map((t) => withCot(TASKS[t], opts.cot));
  for (const t of tasks) assertSupports(lm, t.name, methodFor(t, opts.method), t.methods);
  const sandbox = tasks.some((t) => t.generation?.executesCode) ? sandboxDescription() : undefined;
  const judged = tasks.find((t) => t.generation?.judged);
  if (judged && !opts.judge)
    throw new LlmboxError(`${judged.name} is scored by a judge model, and none is given`, {
      field: '--judge',
      fix: 'pass --judge SPEC (a model folder, or a server such as http://127.0.0.1:8000/v1::MODEL from `llmbox serve`)',
    });
  await lm.ready?.();
  await opts.judge?.ready?.();
  const info = lm.describe();
  const results: TaskResult[] = [];
  for (const t of taskNames) results.push(await evaluateTask(lm, t, opts, info));
  const groups = groupResults(results, names);
  const engine = engineInfo();
  const fingerprint: Fingerprint = {
    model: opts.model ?? info.model,
    model_hash: info.model_hash,
    seed: opts.seed ?? DEFAULTS.eval.seed,
    limit: opts.limit ?? null,
    tasks: Object.fromEntries(
      results.map((r) => [
        r.task,
        {
          version: r.version,
          method: r.method,
          shots: r.shots,
          prompt_hash: r.promptHash,
          ...(r.cot ? { cot: r.cot } : {}),
        },
      ]),
    ),
    lm: info,
    backend: engine?.backend ?? null,
    native_addon: engine ? engine.native.enabled : null,
  };
  if (opts.shard) fingerprint.shard = opts.shard;
  if (sandbox) fingerprint.sandbox = sandbox;
  if (judged && opts.judge) fingerprint.judge = opts.judge.describe();
  const run: EvalRun = { results, groups, fingerprint };
  if (opts.outputDir) {
    run.files = writeRun(opts.outputDir, run, {
      started,
      limit: opts.limit ?? null,
      batchSize: info.batch_size ?? null,
    });
    // Only now that the results are safely on disk is the resume state no longer needed.
    for (const r of results) if (r.resumeFile) rmSync(r.resumeFile, { force: true });
  }
  return run;
}

/** Writes results_<time>.json (lm-eval's keys plus llmbox's fingerprint) and one samples file per task, atomically. */
export function writeRun(
  dir: string,
  run: EvalRun,
  meta: { started: number; limit: number | null; batchSize: number | null },
): { results: string; samples: string[] } {
  const { results, groups, fingerprint } = run;
  const stamp = fileTimestamp();
  const samples = results.map((r) => writeSamples(dir, r.task, stamp, r.samples));
  const file = writeResults(dir, stamp, {
    results: Object.fromEntries([
      ...results.map((r) => [r.task, { alias: r.task, ...lmEvalMetrics(r.metrics) }]),
      ...groups.map((g) => [g.group, { alias: g.group, ...lmEvalMetrics(g.metrics) }]),
    ]),
    groups: Object.fromEntries(groups.map((g) => [g.group, { alias: g.group, ...lmEvalMetrics(g.metrics) }])),
    group_subtasks: Object.fromEntries(groups.map((g) => [g.group, g.tasks])),
    configs: Object.fromEntries(
      results.map((r) => {
        const t = TASKS[r.task];
        return [
          r.task,
          {
            task: r.task,
            num_fewshot: r.shots,
            output_type:
              r.method === 'gen'
                ? 'generate_until'
                : r.method === 'rolling'
                  ? 'loglikelihood_rolling'
                  : 'multiple_choice',
            target_delimiter: t.targetDelimiter,
            fewshot_delimiter: t.fewshotDelimiter,
            metadata: { version: r.version },
          },
        ];
      }),
    ),
    versions: Object.fromEntries(results.map((r) => [r.task, r.version])),
    'n-shot': Object.fromEntries(results.map((r) => [r.task, r.shots])),
    'n-samples': Object.fromEntries(results.map((r) => [r.task, { original: r.total, effective: r.n }])),
    config: { model: fingerprint.model, batch_size: meta.batchSize, limit: meta.limit, random_seed: fingerprint.seed },
    llmbox_fingerprint: fingerprint,
    llmbox_tasks: Object.fromEntries(
      results.map((r, i) => [
        r.task,
        {
          method: r.method,
          prompt_hash: r.promptHash,
          n: r.n,
          total: r.total,
          truncated_prompts: r.truncated,
          samples: basename(samples[i]),
          ...(r.icl ? { icl: r.icl } : {}),
          ...(r.cot ? { cot: r.cot } : {}),
          ...(r.prefix ? { prefix_tokens: { reused: r.prefix.reusedTokens, computed: r.prefix.computedTokens } } : {}),
        },
      ]),
    ),
    llmbox_groups: groups.map((g) => g.group),
    date: meta.started / 1000,
    total_evaluation_time_seconds: String((Date.now() - meta.started) / 1000),
  });
  return { results: file, samples };
}
