import { argmax } from '../../models/sampling.js';
import type { LanguageModel, LoglikelihoodRequest, LoglikelihoodResult } from '../lm.js';
import { LETTERS } from '../tasks/define.js';
import type { ChoiceScores, Doc, Method, Task } from '../tasks/types.js';
import { instanceQuery, type Preamble } from './prompt.js';

/** The (context, continuation) pairs of one multiple-choice instance under `ppl` or `prob`. */
export function choiceRequests(task: Task, method: Method, doc: Doc, pre: Preamble): LoglikelihoodRequest[] {
  const choices = doc.choices ?? [];
  // For chat models the instance is the last user turn and the option opens the assistant's reply.
  const ask = (query: string, continuation: string, turns = pre.turns): LoglikelihoodRequest => ({
    context: (turns === pre.turns ? pre.text : '') + query,
    continuation,
    messages: [...turns, { role: 'user', content: query }],
  });
  if (method === 'prob') return choices.map((_, j) => ask(instanceQuery(task, method, doc), ` ${LETTERS[j]}`));
  if (doc.choiceContexts) return doc.choiceContexts.map((c) => ask(c, task.targetDelimiter + doc.query));
  const scored = choices.map((c) => ask(doc.query, task.targetDelimiter + c));
  // The same options after the content-free context, for the mutual-information score.
  const calibration =
    task.calibration === undefined ? [] : choices.map((c) => ask(task.calibration!, task.targetDelimiter + c, []));
  return [...scored, ...calibration];
}

/**
 * Metrics of one instance from its options' log-likelihoods: acc (highest sum), acc_norm (per
 * character of the option text, lm-eval), acc_token (per token, LLMBox's normalisation), acc_byte
 * (per UTF-8 byte) and, for tasks with a content-free context, acc_mi (minus the option's
 * log-likelihood after that context: mutual information, LLMBox's ARC/OpenBookQA calibration);
 * tasks with their own definition (TruthfulQA MC2, CrowS-Pairs, LAMBADA) replace these.
 */
export function choiceMetrics(
  task: Task,
  doc: Doc,
  requests: LoglikelihoodRequest[],
  results: LoglikelihoodResult[],
): Record<string, number> {
  // Requests beyond the options are their content-free calibration (see choiceRequests).
  const n = doc.choiceContexts?.length ?? doc.choices?.length ?? results.length;
  const main = results.slice(0, n),
    calibration = results.slice(n);
  const scores: ChoiceScores = {
    logprobs: main.map((r) => r.logprob),
    isGreedy: main.map((r) => r.isGreedy),
    tokens: main.map((r) => r.tokens),
  };
  if (task.choiceMetrics) return task.choiceMetrics(scores, doc);
  const gold = doc.gold ?? 0;
  const by = (f: (ll: number, j: number) => number) => (argmax(scores.logprobs.map(f)) === gold ? 1 : 0);
  return {
    acc: by((ll) => ll),
    acc_norm: by((ll, j) => ll / Math.max(1, requests[j].continuation.length - task.targetDelimiter.length)),
    acc_token: by((ll, j) => ll / scores.tokens[j]),
    acc_byte: by((ll, j) => ll / Math.max(1, Buffer.byteLength(requests[j].continuation))),
    ...(calibration.length === n ? { acc_mi: by((ll, j) => ll - calibration[j].logprob) } : {}),
  };
}

/** Scores a chunk of instances with one batched log-likelihood call (so the model can share prefixes across them). */
export async function scoreChoices(lm: LanguageModel, task: Task, method: Method, docs: Doc[], preambles: Preamble[]) {
  const requests = docs.map((d, i) => choiceRequests(task, method, d, preambles[i]));
  const results = await lm.loglikelihood(requests.flat());
  let at = 0;
  return docs.map((d, i) => {
    const mine = results.slice(at, (at += requests[i].length));
    return { requests: requests[i], results: mine, metrics: choiceMetrics(task, d, requests[i], mine) };
  });
}
