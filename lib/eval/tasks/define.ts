import { argmax } from '../../models/sampling.js';
import type { ChoiceScores, Doc, Task } from './types.js';

type Spec = Pick<Task, 'name' | 'dataFolder' | 'loadSplit'> & Partial<Task>;

/** A multiple-choice task with lm-evaluation-harness's defaults: scored by `ppl`, 0-shot, random few-shot draws. */
export function choiceTask(spec: Spec): Task {
  return {
    version: 1,
    methods: ['ppl', 'prob'],
    defaultMethod: 'ppl',
    defaultShots: 0,
    fewshotOrder: 'random',
    targetDelimiter: ' ',
    fewshotDelimiter: '\n\n',
    ...spec,
  };
}

/** A generation task: needs `generation`; few-shot examples show each doc's `target` after its query. */
export function generationTask(spec: Spec & Pick<Task, 'generation'>): Task {
  return {
    version: 1,
    methods: ['gen'],
    defaultMethod: 'gen',
    defaultShots: 0,
    fewshotOrder: 'random',
    targetDelimiter: ' ',
    fewshotDelimiter: '\n\n',
    ...spec,
  };
}

export const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** Accuracy of the single most likely option, for tasks whose other normalisations mean nothing. */
export const bestOptionAcc = (s: ChoiceScores, doc: Doc) => ({ acc: argmax(s.logprobs) === doc.gold ? 1 : 0 });
