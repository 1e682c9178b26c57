import type { EvalRun, MetricValue } from '../eval/evaluate.js';
import { resultsTable } from './eval-table.js';
import { textTable } from './html-table.js';

type Flat = Record<string, number | string | null>;

/**
 * A run as llmbox's stable JSON: `llmbox eval --json`, `llmbox merge --json` and the fluent API's
 * `toJSON()` all print this. Each metric comes with `<metric>_stderr` (null where none is defined).
 * The results file on disk follows lm-evaluation-harness's layout instead (see writeRun).
 */
export interface RunSummary {
  results: Record<string, Flat>;
  groups: Record<string, Flat>;
  fingerprint: EvalRun['fingerprint'];
  /** What each task cost beyond its results (they differ between runs of the same settings): selection time, cached or not, prefix tokens reused. */
  costs: Record<string, Record<string, number | boolean>>;
  files: EvalRun['files'] | null;
}

function flat(metrics: Record<string, MetricValue>): Flat {
  return Object.fromEntries(
    Object.entries(metrics).flatMap(([k, v]) => [
      [k, v.value],
      [`${k}_stderr`, Number.isFinite(v.stderr) ? v.stderr : null],
    ]),
  );
}

export function runSummary(run: EvalRun): RunSummary {
  return {
    results: Object.fromEntries(
      run.results.map((r) => [
        r.task,
        {
          ...flat(r.metrics),
          n: r.n,
          shots: r.shots,
          method: r.method,
          ...(r.truncated ? { truncated_prompts: r.truncated } : {}),
          ...(r.cot ? { cot: r.cot } : {}),
          ...(r.icl ? { icl: r.icl.strategy } : {}),
        },
      ]),
    ),
    groups: Object.fromEntries(
      run.groups.map((g) => [g.group, { ...flat(g.metrics), n: g.n, aggregate: g.aggregate }]),
    ),
    fingerprint: run.fingerprint,
    costs: Object.fromEntries(
      run.results
        .filter((r) => r.icl || r.prefix)
        .map((r) => [
          r.task,
          {
            ...(r.icl ? { icl_seconds: r.icl.seconds, icl_cached: r.icl.cached } : {}),
            ...(r.prefix
              ? { prefix_reused_tokens: r.prefix.reusedTokens, prefix_computed_tokens: r.prefix.computedTokens }
              : {}),
          },
        ]),
    ),
    files: run.files ?? null,
  };
}

/** A run as text: the results table (as in a notebook's plain-text view), then where it was written. */
export function runText(run: EvalRun): string {
  return [textTable(resultsTable(run)), ...(run.files ? [`results: ${run.files.results}`] : [])].join('\n');
}
