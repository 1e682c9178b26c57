import { resolve } from 'node:path';
import { LlmboxError } from '../errors.js';
import { seededRandom } from '../models/sampling.js';
import { projectRoot } from '../util/paths.js';
import type { LanguageModel } from './lm.js';
import { mean, stderrOfMean } from './metrics/index.js';
import { fewshotPrefix, scoreMultipleChoice, type ChoiceRecord } from './methods/multiple-choice.js';
import { TASKS, type MultipleChoiceDoc } from './tasks/index.js';

export interface EvaluateOptions {
  /** Few-shot examples per instance; the task's default when absent. */
  shots?: number;
  /** Evaluate the first N instances only. */
  limit?: number;
  /** Root of the data sets (each task reads its own folder below it). */
  dataDir?: string;
  /** Seed for drawing few-shot examples. */
  seed?: number;
}

export interface TaskResult {
  task: string;
  version: number;
  shots: number;
  n: number;
  metrics: Record<string, number>;
  samples: ChoiceRecord[];
}

/** LLMBOX_DATA_DIR, else the shared data folder beside the checkout. */
export function defaultDataDir(): string {
  return process.env.LLMBOX_DATA_DIR ?? resolve(projectRoot(), '../shared/data');
}

/** Few-shot examples for one instance: a seeded draw from the few-shot split, never the instance itself. */
function drawShots(pool: MultipleChoiceDoc[], k: number, exclude: string, random: () => number): MultipleChoiceDoc[] {
  const candidates = pool.filter((d) => d.id !== exclude);
  const picked: MultipleChoiceDoc[] = [];
  const taken = new Set<number>();
  while (picked.length < Math.min(k, candidates.length)) {
    const j = Math.floor(random() * candidates.length);
    if (!taken.has(j)) {
      taken.add(j);
      picked.push(candidates[j]);
    }
  }
  return picked;
}

export function evaluateTask(lm: LanguageModel, taskName: string, opts: EvaluateOptions = {}): TaskResult {
  const task = TASKS[taskName];
  if (!task) {
    throw new LlmboxError(`unknown task ${taskName}`, { field: '--dataset', fix: `choose from ${Object.keys(TASKS).join(', ')}` });
  }
  const dataDir = resolve(opts.dataDir ?? defaultDataDir(), task.dataFolder);
  const shots = opts.shots ?? task.defaultShots;
  let docs = task.loadSplit(dataDir, 'eval');
  if (opts.limit !== undefined) docs = docs.slice(0, opts.limit);
  const pool = shots > 0 ? task.loadSplit(dataDir, 'fewshot') : [];
  const random = seededRandom(opts.seed ?? 1234);
  const contexts = docs.map((d) => fewshotPrefix(task, drawShots(pool, shots, d.id, random)) + d.query);
  const samples = scoreMultipleChoice(lm, task, docs, contexts);
  const acc = samples.map((s) => s.acc), accNorm = samples.map((s) => s.accNorm);
  return {
    task: task.name,
    version: task.version,
    shots,
    n: samples.length,
    metrics: { acc: mean(acc), acc_stderr: stderrOfMean(acc), acc_norm: mean(accNorm), acc_norm_stderr: stderrOfMean(accNorm) },
    samples,
  };
}
