import { join } from 'node:path';
import { runPython } from '../sandbox.js';
import { generationTask } from './define.js';
import { field, isInt, isString, isStringArray, readJsonl } from '../../data/files.js';
import type { Doc } from './types.js';

/** Runs a program built from the completion; 1 when it exits cleanly. */
async function passes(program: string): Promise<Record<string, number>> {
  const r = await runPython(program, { timeoutMs: 10_000 });
  return { pass: r.status === 'passed' ? 1 : 0 };
}

/**
 * HumanEval (Chen et al. 2021): the function signature and docstring as the prompt, the completion
 * appended to it, then the task's unit tests run in the sandbox; pass@k by the unbiased estimator
 * over n samples (pass@1 of greedy decoding by default).
 */
export const humaneval = generationTask({
  name: 'humaneval',
  dataFolder: 'humaneval',
  targetDelimiter: '',
  loadSplit(dataDir) {
    const file = join(dataDir, 'HumanEval.jsonl');
    return readJsonl(file).map((row, i): Doc => ({
      id: field(row, 'task_id', isString, 'a string', file, i),
      query: field(row, 'prompt', isString, 'Python source', file, i),
      references: [field(row, 'test', isString, 'Python test source', file, i)],
      extra: { entryPoint: field(row, 'entry_point', isString, 'a function name', file, i) },
    }));
  },
  generation: {
    until: ['\nclass', '\ndef', '\n#', '\nif', '\nprint'],
    maxNewTokens: 512,
    filters: { none: (t) => t },
    score: (completion, doc) =>
      passes(`${doc.query}${completion}\n\n${doc.references![0]}\n\ncheck(${doc.extra!.entryPoint as string})\n`),
    samples: 'pass@k',
    executesCode: true,
  },
});

/**
 * MBPP (Austin et al. 2021), lm-eval's prompt: the task, its three asserts, "[BEGIN]"; code until
 * "[DONE]". Evaluation on task ids 11-510 with tasks 2, 3 and 4 as the fixed 3-shot examples (the
 * paper's split); the asserts run in the sandbox.
 */
export const mbpp = generationTask({
  name: 'mbpp',
  dataFolder: 'mbpp',
  defaultShots: 3,
  fewshotOrder: 'first',
  targetDelimiter: '',
  loadSplit(dataDir, split) {
    const file = join(dataDir, 'mbpp.jsonl');
    const keep = split === 'eval' ? (id: number) => id >= 11 && id <= 510 : (id: number) => id >= 2 && id <= 4;
    return readJsonl(file).flatMap((row, i): Doc[] => {
      const id = field(row, 'task_id', isInt, 'an integer', file, i);
      if (!keep(id)) return [];
      const tests = field(row, 'test_list', isStringArray, 'a list of assert statements', file, i);
      const text = field(row, 'text', isString, 'the task description', file, i);
      return [
        {
          id: `mbpp-${id}`,
          query: `You are an expert Python programmer, and here is your task: ${text} Your code should pass these tests:\n\n${tests.join('\n')}\n[BEGIN]\n`,
          target: `${field(row, 'code', isString, 'Python source', file, i)}\n[DONE]`,
          references: tests,
          extra: { setup: typeof row.test_setup_code === 'string' ? row.test_setup_code : '' },
        },
      ];
    });
  },
  generation: {
    until: ['[DONE]'],
    maxNewTokens: 512,
    filters: { none: (t) => t },
    score: (code, doc) => passes(`${doc.extra!.setup as string}\n${code}\n\n${doc.references!.join('\n')}\n`),
    samples: 'pass@k',
    executesCode: true,
  },
});
