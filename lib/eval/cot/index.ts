import { LlmboxError } from '../../errors.js';
import type { CotMode, Task } from '../tasks/types.js';

export const COT_MODES: readonly CotMode[] = ['none', 'base', 'least-to-most', 'pal'];

/** The chain-of-thought modes a task offers, its own first. */
export function cotModes(task: Task): CotMode[] {
  return task.cot ? [task.cot.default, ...(Object.keys(task.cot.variants) as CotMode[])] : [];
}

/** The task as it runs under a chain-of-thought mode (itself for its own mode or none asked); an error naming the modes it has otherwise. */
export function withCot(task: Task, mode: CotMode | undefined): Task {
  if (mode === undefined || mode === task.cot?.default) return task;
  const variant = task.cot?.variants[mode];
  if (variant) return variant();
  const modes = cotModes(task);
  throw new LlmboxError(`task ${task.name} has no chain-of-thought mode ${mode}`, {
    field: '--cot',
    fix: modes.length
      ? `use --cot ${modes.join(' or ')} for ${task.name}`
      : `${task.name} has no chain-of-thought modes: leave --cot out (gsm8k, math, bbh and mgsm offer them)`,
  });
}
