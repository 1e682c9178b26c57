import { argmax } from '../../models/sampling.js';
import type { LanguageModel } from '../lm.js';
import type { MultipleChoiceDoc, MultipleChoiceTask } from '../tasks/types.js';

export interface ChoiceRecord {
  id: string;
  context: string;
  continuations: string[];
  logprobs: number[];
  gold: number;
  pred: number;
  predNorm: number;
  acc: number;
  accNorm: number;
}

/** The few-shot prefix: description, then solved examples, each followed by the few-shot delimiter. */
export function fewshotPrefix(task: MultipleChoiceTask, examples: MultipleChoiceDoc[]): string {
  const shots = examples.map((d) => d.query + task.targetDelimiter + d.choices[d.gold]);
  return (task.description ?? '') + shots.map((s) => s + task.fewshotDelimiter).join('');
}

/**
 * Completion scoring ("ppl" in LLMBox): each choice's log-likelihood given the context. acc takes
 * the highest sum; acc_norm divides by the choice's length in characters (lm-evaluation-harness).
 */
export function scoreMultipleChoice(lm: LanguageModel, task: MultipleChoiceTask, docs: MultipleChoiceDoc[], contexts: string[]): ChoiceRecord[] {
  const continuations = docs.map((d) => d.choices.map((c) => task.targetDelimiter + c));
  const results = lm.loglikelihood(docs.flatMap((_, i) => continuations[i].map((continuation) => ({ context: contexts[i], continuation }))));
  let at = 0;
  return docs.map((d, i) => {
    const lls = d.choices.map(() => results[at++].logprob);
    const pred = argmax(lls);
    const predNorm = argmax(lls.map((ll, j) => ll / d.choices[j].length));
    return {
      id: d.id,
      context: contexts[i],
      continuations: continuations[i],
      logprobs: lls,
      gold: d.gold,
      pred,
      predNorm,
      acc: pred === d.gold ? 1 : 0,
      accNorm: predNorm === d.gold ? 1 : 0,
    };
  });
}
