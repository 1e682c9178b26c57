/** Task registry: a new dataset is one file in this folder plus one line here. */
import { arcChallenge, arcEasy } from './arc.js';
import { bbhGroup, bbhTasks } from './bbh.js';
import { humaneval, mbpp } from './code.js';
import { floresGroup, floresTasks } from './flores200.js';
import { hellaswag } from './hellaswag.js';
import { gsm8k } from './gsm8k.js';
import { math, math500, mgsmGroup, mgsmTasks } from './math-word.js';
import { agievalGroups, agievalTasks } from './agieval.js';
import { superglueWsc } from './superglue-wsc.js';
import { ifeval } from './ifeval.js';
import { winogender, xwinogradGroup, xwinogradTasks } from './winograd-family.js';
import { mtBench, mtBenchPairwise, vicunaBench } from './mt-bench.js';
import { mmluCategoryGroups, mmluGroup, mmluTasks } from './mmlu.js';
import { nqOpen, triviaqa } from './open-qa.js';
import { c4Ppl, tinystoriesPpl, wikipediaPpl, wikitext2 } from './perplexity.js';
import { crowsPairs, halueval, lambada, openbookqa, piqa, winogradWsc, winogrande } from './simple-choice.js';
import { truthfulqaGen, truthfulqaMc1, truthfulqaMc2 } from './truthfulqa.js';
import type { Task, TaskGroup } from './types.js';
import { join } from 'node:path';
import { configTasks } from './declarative.js';
import { projectRoot } from '../../util/paths.js';

/** The tasks written as configs in the repository's tasks/ folder. */
const shipped = configTasks(join(projectRoot(), 'tasks'));

const ALL: Task[] = [
  arcEasy,
  arcChallenge,
  hellaswag,
  piqa,
  winogrande,
  openbookqa,
  lambada,
  crowsPairs,
  halueval,
  truthfulqaMc1,
  truthfulqaMc2,
  truthfulqaGen,
  gsm8k,
  math,
  triviaqa,
  nqOpen,
  humaneval,
  mbpp,
  tinystoriesPpl,
  wikipediaPpl,
  c4Ppl,
  wikitext2,
  math500,
  superglueWsc,
  winogradWsc,
  ifeval,
  winogender,
  ...xwinogradTasks,
  mtBench,
  vicunaBench,
  mtBenchPairwise,
  ...agievalTasks,
  ...mmluTasks,
  ...bbhTasks,
  ...mgsmTasks,
  ...floresTasks,
  ...shipped.tasks,
];

export const TASKS: Record<string, Task> = Object.fromEntries(ALL.map((t) => [t.name, t]));
const twice = ALL.find((t, i) => ALL.findIndex((u) => u.name === t.name) !== i);
if (twice) throw new Error(`task ${twice.name} is defined twice (a tasks/ config takes a built-in task's name?)`);

export const GROUPS: Record<string, TaskGroup> = Object.fromEntries(
  [
    mmluGroup,
    ...mmluCategoryGroups,
    bbhGroup,
    mgsmGroup,
    floresGroup,
    ...agievalGroups,
    xwinogradGroup,
    ...shipped.groups,
    { name: 'truthfulqa', tasks: ['truthfulqa_mc1', 'truthfulqa_mc2', 'truthfulqa_gen'], aggregate: 'macro' as const },
  ].map((g) => [g.name, g]),
);

export type { Doc, Method, Task, TaskGroup } from './types.js';
