import type { EvalRun } from '../eval/evaluate.js';
import { runSummary, runText } from '../report/summary.js';
import { print } from './options.js';

/** The summary of an evaluation: llmbox's stable JSON (with `extra` keys), or the results table. */
export function printRun(run: EvalRun, json: boolean, extra: Record<string, unknown> = {}): void {
  print(json, { ...runSummary(run), ...extra }, runText(run));
}
