import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { withCot, cotModes } from '../lib/eval/cot/index.js';
import { finalQuestion, leastToMost, parseSubquestions } from '../lib/eval/cot/least-to-most.js';
import { palAnswer, palProgram, sameAnswer } from '../lib/eval/cot/pal.js';
import type { GenerateUntilRequest } from '../lib/eval/lm.js';
import { sandboxDescription } from '../lib/eval/sandbox.js';
import { answerOnlyPrompt } from '../lib/eval/tasks/bbh.js';
import { TASKS } from '../lib/eval/tasks/index.js';
import type { Doc } from '../lib/eval/tasks/types.js';
import { llmboxErrorOf } from './helpers/models.js';
import { ScriptedLM } from './helpers/scripted.js';

const sandboxed = (() => {
  try {
    return sandboxDescription().startsWith('bubblewrap');
  } catch {
    return false;
  }
})();

describe('chain-of-thought modes', () => {
  it('lists each task its modes, its own first, and refuses a mode a task lacks', () => {
    expect(cotModes(TASKS.gsm8k)).toEqual(['base', 'none', 'least-to-most', 'pal']);
    expect(cotModes(TASKS.bbh_navigate)).toEqual(['base', 'none']);
    expect(cotModes(TASKS.math)).toEqual(['base', 'none']);
    expect(cotModes(TASKS.arc_easy)).toEqual([]);
    expect(withCot(TASKS.gsm8k, 'base')).toBe(TASKS.gsm8k);
    expect(withCot(TASKS.gsm8k, undefined)).toBe(TASKS.gsm8k);
    expect(withCot(TASKS.gsm8k, 'pal').generation!.executesCode).toBe(true);
    const e = llmboxErrorOf(() => withCot(TASKS.bbh_navigate, 'pal'));
    expect(e.field).toBe('--cot');
    expect(e.fix).toBe('use --cot base or none for bbh_navigate');
    expect(llmboxErrorOf(() => withCot(TASKS.arc_easy, 'none')).fix).toMatch(/has no chain-of-thought modes/);
  });

  it("drops BBH's reasoning for the answer-only prompt", () => {
    const cot =
      "Say the colour.\n\nQ: Sky?\nOptions:\n(A) blue\n(B) red\nA: Let's think step by step.\nThe sky is blue. So the answer is (A).\n\n" +
      "Q: Grass?\nA: Let's think step by step.\nGrass is green.\nSo the answer is green.\n\n";
    expect(answerOnlyPrompt(cot)).toBe(
      'Say the colour.\n\nQ: Sky?\nOptions:\n(A) blue\n(B) red\nA: (A)\n\nQ: Grass?\nA: green\n\n',
    );
  });
});

describe('least-to-most', () => {
  it('finds the question a problem ends with and the quoted sub-questions', () => {
    expect(finalQuestion('Tom has 3 apples. He buys 2 more. How many does he have now?')).toBe(
      'How many does he have now?',
    );
    expect(finalQuestion('Tom has 3 apples. How many? He eats one.')).toBe('How many?');
    expect(
      parseSubquestions(' "How many did he buy?", "How many now?", "How many did he buy?".', 'How many now?', 5),
    ).toEqual(['How many did he buy?']);
    expect(parseSubquestions('"a", "b", "c"', 'z', 2)).toEqual(['a', 'b']);
  });

  it('decomposes, then asks each sub-question with the earlier answers in context, the problem last', async () => {
    const docs: Doc[] = [
      { id: 'p', query: 'Q: P\nA: decompose:', extra: { problem: 'Tom has 3 apples. He buys 2. How many now?' } },
      { id: 'q', query: 'Q: Q\nA: decompose:', extra: { problem: 'Ann is 5. How old is she in 2 years?' } },
    ];
    const gen = (r: GenerateUntilRequest) => {
      if (r.context.endsWith('decompose:')) return r.context.includes('Q: P') ? ' "How many did he buy?".' : ' none';
      if (r.context.endsWith('Q: How many did he buy?\nA:')) return ' 2';
      if (r.context.endsWith('Q: How many now?\nA:')) {
        expect(r.context).toContain('Q: How many did he buy?\nA: 2\n\n');
        return ' 3 + 2 = 5. The answer is 5.';
      }
      if (r.context.endsWith('Q: How old is she in 2 years?\nA:')) return ' The answer is 7.';
      throw new Error(`unexpected request ${JSON.stringify(r.context)}`);
    };
    const lm = new ScriptedLM(gen);
    const solve = leastToMost({
      solvePrefix: 'EXEMPLARS\n\n',
      problem: (d) => ({ problem: d.extra!.problem as string, question: finalQuestion(d.extra!.problem as string) }),
      maxSubquestions: 5,
      until: ['\n\n'],
    });
    const requests = docs.map((d) => ({ context: d.query, until: ['\n'], maxNewTokens: 20 }));
    const out = await solve(lm, requests, docs);
    expect(out[0]).toMatch(/Q: How many did he buy\?\nA: 2\n\nQ: How many now\?\nA: 3 \+ 2 = 5. The answer is 5.$/);
    expect(out[1]).toMatch(/Q: How old is she in 2 years\?\nA: The answer is 7.$/);
    // one batch for decompositions, then one per step over the instances still answering
    const contexts = lm.seen.map((r) => r.context);
    expect(contexts.slice(2).every((c) => c.startsWith('EXEMPLARS\n\nProblem: '))).toBe(true);
    expect(lm.seen).toHaveLength(5);
  });
});

describe('PAL', () => {
  it('compares numbers as PAL does and builds the program from the completion', () => {
    expect(sameAnswer('72.0', '72')).toBe(true);
    expect(sameAnswer('0.30000000000000004', '0.3')).toBe(true);
    expect(sameAnswer('1,000', '1000')).toBe(true);
    expect(sameAnswer('71.9', '72')).toBe(false);
    expect(sameAnswer('[error]', '72')).toBe(false);
    expect(palProgram('    return 1 + 1\n\n\n')).toBe('def solution():\n    return 1 + 1\n\nprint(solution())\n');
  });

  it.runIf(sandboxed)(
    'runs the program in the sandbox: its result, errors, timeouts, and no network or files',
    async () => {
      expect(await palAnswer('    a = 48\n    return a + a / 2')).toBe('72.0');
      expect(await palAnswer('    return 1 / 0')).toBe('[error]');
      expect(await palAnswer('    while True:\n        pass')).toBe('[timeout]');
      expect(await palAnswer('    import socket\n    socket.create_connection(("127.0.0.1", 22))\n    return 1')).toBe(
        '[error]',
      );
      expect(await palAnswer("    return open('/etc/shadow').read()[:5]")).toBe('[error]');
      // what a program prints before its result does not become the answer
      expect(await palAnswer("    print('thinking')\n    return 5")).toBe('5');
    },
    30_000,
  );
});

describe('llmbox eval --cot', () => {
  const bin = fileURLToPath(new URL('../bin/llmbox.js', import.meta.url));
  it('refuses a mode the task lacks before loading the model, exit 2', () => {
    const r = spawnSync(process.execPath, [bin, 'eval', '-m', 'stories260K', '-d', 'arc_easy', '--cot', 'pal'], {
      encoding: 'utf8',
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/task arc_easy has no chain-of-thought mode pal/);
  });
});
