import { join } from 'node:path';
import { LlmboxError } from '../../errors.js';
import { CHECKERS, followed, type Instruction, type Kwargs } from '../metrics/ifeval/index.js';
import type { SampleRecord } from '../results.js';
import { generationTask } from './define.js';
import { field, isArray, isString, readJsonl } from '../../data/files.js';
import type { Doc } from './types.js';

const mean = (xs: boolean[]) => xs.filter(Boolean).length / xs.length;

/** Instruction-level accuracy over all instructions of all prompts (IFEval's inst_level_*_acc), from each prompt's share and count. */
const overInstructions = (metric: string) => (samples: SampleRecord[]) => {
  let followedCount = 0,
    total = 0;
  for (const s of samples) {
    followedCount += s.metrics[metric] * s.metrics.instructions;
    total += s.metrics.instructions;
  }
  return followedCount / total;
};

/**
 * IFEval (Zhou et al. 2023): 541 prompts carrying 1 to 3 verifiable instructions ("answer in
 * fewer than 50 words", "no commas"), the prompt given as it is (lm-eval's ifeval). Reported as the
 * original does: prompt-level accuracy (every instruction of the prompt followed) and
 * instruction-level accuracy (over all instructions), each strict (the response as generated)
 * and loose (also after dropping markdown asterisks, the first line or the last line).
 */
export const ifeval = generationTask({
  name: 'ifeval',
  dataFolder: 'ifeval',
  fewshotOrder: 'first',
  loadSplit(dataDir) {
    const file = join(dataDir, 'input_data.jsonl');
    return readJsonl(file).map((row, i): Doc => {
      const prompt = field(row, 'prompt', isString, 'a string', file, i);
      const ids = field(row, 'instruction_id_list', isArray, 'a list of instruction ids', file, i) as string[];
      const kwargs = field(row, 'kwargs', isArray, 'a list of argument objects', file, i) as Record<string, unknown>[];
      const unknown = ids.find((id) => !CHECKERS[id]);
      if (unknown)
        throw new LlmboxError(`row ${i + 1}: unknown instruction ${unknown}`, {
          file,
          field: 'instruction_id_list',
          fix: `the instructions are ${Object.keys(CHECKERS).join(', ')}`,
        });
      if (kwargs.length !== ids.length)
        throw new LlmboxError(`row ${i + 1}: ${ids.length} instructions but ${kwargs.length} kwargs`, {
          file,
          field: 'kwargs',
        });
      // The original drops null arguments before building each instruction.
      const instructions: Instruction[] = ids.map((id, j) => ({
        id,
        kwargs: Object.fromEntries(Object.entries(kwargs[j] ?? {}).filter(([, v]) => v !== null)) as Kwargs,
      }));
      return { id: `ifeval-${row.key ?? i}`, query: prompt, references: [''], extra: { instructions } };
    });
  },
  generation: {
    until: [],
    maxNewTokens: 1280,
    filters: { none: (t) => t },
    score: (response, doc) => {
      const instructions = doc.extra!.instructions as Instruction[];
      const { strict, loose } = followed(response, instructions);
      return {
        prompt_level_strict_acc: strict.every(Boolean) ? 1 : 0,
        inst_level_strict_acc: mean(strict),
        prompt_level_loose_acc: loose.every(Boolean) ? 1 : 0,
        inst_level_loose_acc: mean(loose),
        instructions: instructions.length,
      };
    },
  },
  corpus: {
    inst_level_strict_acc: overInstructions('inst_level_strict_acc'),
    inst_level_loose_acc: overInstructions('inst_level_loose_acc'),
  },
});
