/**
 * Joins the results of a run split with --shard i/n (on several machines or processes) into one
 * run whose scores equal an unsharded run's: samples are concatenated by instance and every metric
 * is recomputed from them.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LlmboxError } from '../errors.js';
import { groupResults, taskMetrics, type EvalRun, type Fingerprint, type TaskResult } from './evaluate.js';
import type { SampleRecord } from './results.js';
import { TASKS } from './tasks/index.js';

interface ShardFile {
  dir: string;
  file: string;
  fingerprint: Fingerprint;
  tasks: Record<
    string,
    {
      method: TaskResult['method'];
      prompt_hash: string;
      n: number;
      total: number;
      truncated_prompts?: number;
      samples: string;
    }
  >;
  groups: string[];
}

function readShard(dir: string): ShardFile {
  const files = existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => /^results_.*\.json$/.test(f))
        .sort()
    : [];
  if (!files.length)
    throw new LlmboxError('no results_*.json here', { file: dir, fix: 'pass the --output folders of the shard runs' });
  const file = join(dir, files.at(-1)!);
  const j = JSON.parse(readFileSync(file, 'utf8')) as {
    llmbox_fingerprint?: Fingerprint;
    llmbox_tasks?: ShardFile['tasks'];
    llmbox_groups?: string[];
  };
  if (!j.llmbox_fingerprint || !j.llmbox_tasks)
    throw new LlmboxError('results file without llmbox_fingerprint/llmbox_tasks', {
      file,
      fix: 'merge results written by this version of llmbox eval',
    });
  return { dir, file, fingerprint: j.llmbox_fingerprint, tasks: j.llmbox_tasks, groups: j.llmbox_groups ?? [] };
}

/** What must agree between shards: everything in the fingerprint but the shard and the engine it ran on. */
function identity(f: Fingerprint): string {
  return JSON.stringify({ model: f.model_hash, seed: f.seed, limit: f.limit, tasks: f.tasks, count: f.shard?.count });
}

export function mergeRuns(dirs: string[]): EvalRun {
  const shards = dirs.map(readShard);
  const count = shards[0].fingerprint.shard?.count;
  for (const s of shards) {
    if (!s.fingerprint.shard)
      throw new LlmboxError('this run was not sharded', {
        file: s.file,
        field: 'llmbox_fingerprint.shard',
        fix: 'merge the outputs of runs made with --shard i/n',
      });
    if (identity(s.fingerprint) !== identity(shards[0].fingerprint)) {
      throw new LlmboxError(
        `shard ${s.fingerprint.shard.index}/${s.fingerprint.shard.count} was run with other settings than shard ${shards[0].fingerprint.shard!.index}/${count} (model, seed, limit, tasks or prompts differ)`,
        { file: s.file, field: 'llmbox_fingerprint', fix: 'run every shard with the same model and flags' },
      );
    }
  }
  const indices = shards.map((s) => s.fingerprint.shard!.index);
  const missing = Array.from({ length: count! }, (_, i) => i).filter((i) => !indices.includes(i));
  const twice = indices.filter((i, k) => indices.indexOf(i) !== k);
  if (missing.length || twice.length) {
    const problems = [
      ...(missing.length ? [`missing: ${missing.join(', ')}`] : []),
      ...(twice.length ? [`given twice: ${twice.join(', ')}`] : []),
    ];
    throw new LlmboxError(`shards ${problems.join('; ')} (of ${count})`, {
      field: 'DIR',
      fix: `pass each of the ${count} shard folders once`,
    });
  }
  const results: TaskResult[] = Object.entries(shards[0].tasks).map(([name, t]) => {
    const task = TASKS[name];
    if (!task)
      throw new LlmboxError(`unknown task ${name}`, {
        file: shards[0].file,
        fix: 'a task from a config file must be registered first: pass its config with -d',
      });
    const samples = shards.flatMap((s) =>
      readFileSync(join(s.dir, s.tasks[name].samples), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as SampleRecord),
    );
    samples.sort((a, b) => a.doc_id - b.doc_id);
    if (samples.length !== t.total || samples.some((x, i) => x.doc_id !== i)) {
      throw new LlmboxError(`task ${name}: the shards hold ${samples.length} instances, the run has ${t.total}`, {
        field: 'DIR',
        fix: 'every shard must have finished',
      });
    }
    const { version, shots } = shards[0].fingerprint.tasks[name];
    return {
      task: name,
      version,
      method: t.method,
      shots,
      n: samples.length,
      total: t.total,
      truncated: shards.reduce((a, s) => a + (s.tasks[name].truncated_prompts ?? 0), 0),
      promptHash: t.prompt_hash,
      metrics: taskMetrics(task, samples),
      samples,
      resumed: 0,
    };
  });
  const { shard: _shard, ...fingerprint } = shards[0].fingerprint;
  return { results, groups: groupResults(results, shards[0].groups), fingerprint };
}
