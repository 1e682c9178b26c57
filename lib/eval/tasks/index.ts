/** Task registry: a new dataset is one file in this folder plus one line here. */
import { arcChallenge, arcEasy } from './arc.js';
import { hellaswag } from './hellaswag.js';
import type { MultipleChoiceTask } from './types.js';

export const TASKS: Record<string, MultipleChoiceTask> = {
  arc_easy: arcEasy,
  arc_challenge: arcChallenge,
  hellaswag,
};

export type { MultipleChoiceDoc, MultipleChoiceTask } from './types.js';
