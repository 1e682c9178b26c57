import type { LanguageModel } from '../lm.js';
import { passAtK } from '../metrics/index.js';
import type { Doc, Task } from '../tasks/types.js';
import type { Preamble } from './prompt.js';
import { DEFAULTS } from '../../util/defaults.js';

export interface GenerationOptions {
  /** Samples per instance (default 1, greedy). More than one samples at `temperature`. */
  samples?: number;
  temperature?: number;
  seed?: number;
  maxNewTokens?: number;
  /** pass@k reported for these k (each at most the samples); default 1, 5, 10 and 100. */
  passK?: number[];
  /** The judge of LLM-as-judge tasks. */
  judge?: LanguageModel;
}

export interface GenerationRecord {
  context: string;
  outputs: string[];
  /** Extracted answer per filter (the vote winner with several samples). */
  answers: Record<string, string>;
  metrics: Record<string, number>;
}

/** The most frequent answer; ties go to the one seen first (self-consistency, Wang et al. 2023). */
export function majorityVote(answers: string[]): string {
  const counts = new Map<string, number>();
  let best = answers[0],
    bestCount = 0;
  for (const a of answers) {
    const c = (counts.get(a) ?? 0) + 1;
    counts.set(a, c);
    if (c > bestCount) {
      best = a;
      bestCount = c;
    }
  }
  return best;
}

const DEFAULT_PASS_K = [1, 5, 10, 100];

/** A metric's key: plain for the default filter, "metric,filter" otherwise (lm-eval's naming). */
export const metricKey = (metric: string, filter: string) => (filter === 'none' ? metric : `${metric},${filter}`);

/**
 * Generates for a chunk of instances, extracts answers with each filter and scores them. Several
 * samples per instance are reduced by majority vote, or for code by pass@k over all samples.
 */
export async function runGeneration(
  lm: LanguageModel,
  task: Task,
  docs: Doc[],
  preambles: Preamble[],
  opts: GenerationOptions = {},
): Promise<GenerationRecord[]> {
  const spec = task.generation!;
  const n = opts.samples ?? 1;
  const contexts = docs.map((d, i) => preambles[i].text + d.query);
  const requests = contexts.flatMap((context, i) =>
    Array.from({ length: n }, (_, s) => ({
      context,
      messages: [...preambles[i].turns, { role: 'user' as const, content: docs[i].query }],
      until: spec.until,
      maxNewTokens: opts.maxNewTokens ?? spec.maxNewTokens,
      ...(n > 1
        ? {
            temperature: opts.temperature ?? DEFAULTS.eval.sampleTemperature,
            seed: (opts.seed ?? DEFAULTS.eval.seed) + i * 7919 + s,
          }
        : {}),
    })),
  );
  const ctx = { judge: opts.judge };
  const outputs = spec.solve
    ? await spec.solve(
        lm,
        requests,
        docs.flatMap((d) => Array(n).fill(d)),
      )
    : await lm.generateUntil(requests);
  const records: GenerationRecord[] = [];
  for (const [i, doc] of docs.entries()) {
    const outs = outputs.slice(i * n, (i + 1) * n);
    const answers: Record<string, string> = {};
    const metrics: Record<string, number> = {};
    for (const [filter, extract] of Object.entries(spec.filters)) {
      const extracted = await Promise.all(outs.map((o) => extract(o, doc)));
      if (n > 1 && spec.samples === 'pass@k') {
        const passed = await Promise.all(extracted.map((a) => spec.score(a, doc, ctx)));
        for (const metric of Object.keys(passed[0])) {
          const c = passed.filter((p) => p[metric] === 1).length;
          for (const k of (opts.passK ?? DEFAULT_PASS_K).filter((k) => k <= n))
            metrics[metricKey(`${metric}@${k}`, filter)] = passAtK(n, c, k);
        }
        answers[filter] = extracted[0];
      } else {
        const answer = n > 1 ? majorityVote(extracted) : extracted[0];
        answers[filter] = answer;
        // How many samples gave the voted answer: self-consistency's agreement.
        if (n > 1) metrics[metricKey('agreement', filter)] = extracted.filter((a) => a === answer).length / n;
        for (const [m, v] of Object.entries(await spec.score(answer, doc, ctx)))
          metrics[metricKey(n === 1 && spec.samples === 'pass@k' ? `${m}@1` : m, filter)] = v;
      }
    }
    records.push({ context: contexts[i], outputs: outs, answers, metrics });
  }
  return records;
}
