import { Float64, Int32, Table, Utf8, vectorFromArray } from 'apache-arrow';
import type { EvalRun, TaskResult } from '../eval/evaluate.js';

/**
 * One row per (task, subset, metric) of a run: members of a requested group appear under the
 * group's name with their subset (an MMLU subject, a BBH task), the group's aggregate with subset,
 * method and shots null.
 */
export function resultsTable(run: EvalRun): Table {
  const task: string[] = [],
    subset: (string | null)[] = [],
    method: (string | null)[] = [],
    shots: (number | null)[] = [];
  const metric: string[] = [],
    value: number[] = [],
    stderr: (number | null)[] = [],
    n: number[] = [];
  const push = (t: string, s: string | null, r: TaskResult | null, m: string, v: number, e: number, count: number) => {
    task.push(t);
    subset.push(s);
    method.push(r?.method ?? null);
    shots.push(r?.shots ?? null);
    metric.push(m);
    value.push(v);
    stderr.push(Number.isFinite(e) ? e : null);
    n.push(count);
  };
  for (const r of run.results) {
    const group = run.groups.find((g) => g.tasks.includes(r.task));
    for (const [m, { value: v, stderr: e }] of Object.entries(r.metrics)) {
      if (group)
        push(
          group.group,
          r.task.startsWith(`${group.group}_`) ? r.task.slice(group.group.length + 1) : r.task,
          r,
          m,
          v,
          e,
          r.n,
        );
      else push(r.task, null, r, m, v, e, r.n);
    }
  }
  for (const g of run.groups)
    for (const [m, { value: v, stderr: e }] of Object.entries(g.metrics)) push(g.group, null, null, m, v, e, g.n);
  return new Table({
    task: vectorFromArray(task, new Utf8()),
    subset: vectorFromArray(subset, new Utf8()),
    method: vectorFromArray(method, new Utf8()),
    shots: vectorFromArray(shots, new Int32()),
    metric: vectorFromArray(metric, new Utf8()),
    value: vectorFromArray(value, new Float64()),
    stderr: vectorFromArray(stderr, new Float64()),
    n: vectorFromArray(n, new Int32()),
  });
}

/** Per-instance records of one task: ids, target, the model's answer and every metric as a column. */
export function samplesTable(result: TaskResult): Table {
  const metrics = [...new Set(result.samples.flatMap((s) => Object.keys(s.metrics)))];
  const answer = (resp: unknown) => (Array.isArray(resp) ? JSON.stringify(resp) : String(resp ?? ''));
  return new Table({
    doc_id: vectorFromArray(
      result.samples.map((s) => s.doc_id),
      new Int32(),
    ),
    id: vectorFromArray(
      result.samples.map((s) => s.doc.id),
      new Utf8(),
    ),
    target: vectorFromArray(
      result.samples.map((s) => s.target),
      new Utf8(),
    ),
    answer: vectorFromArray(
      result.samples.map((s) => answer(s.filtered_resps[0])),
      new Utf8(),
    ),
    ...Object.fromEntries(
      metrics.map((m) => [
        m,
        vectorFromArray(
          result.samples.map((s) => s.metrics[m] ?? null),
          new Float64(),
        ),
      ]),
    ),
  });
}
