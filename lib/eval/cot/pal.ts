import { DEFAULTS } from '../../util/defaults.js';
import { runPython } from '../sandbox.js';

/**
 * PAL (Gao et al. 2023, program-aided language models): the model writes the body of a Python
 * `solution()` and the sandbox runs it; what it returns is the answer. The prompt ends with the
 * function's header, so the completion is its body.
 */
export const PAL_HEADER = 'def solution():\n';

/** The program of a completion: the function the model wrote, then its result printed. */
export function palProgram(completion: string): string {
  return `${PAL_HEADER}${completion.replace(/\s+$/, '')}\n\nprint(solution())\n`;
}

/** Runs a completion's program in the sandbox: the last line it printed, or [error] / [timeout]. */
export async function palAnswer(completion: string): Promise<string> {
  const r = await runPython(palProgram(completion), {
    timeoutMs: DEFAULTS.cot.palTimeoutMs,
    memoryMb: DEFAULTS.cot.palMemoryMb,
  });
  if (r.status !== 'passed') return r.status === 'timeout' ? '[timeout]' : '[error]';
  const lines = r.output.trim().split('\n');
  return lines[lines.length - 1].trim();
}

/** PAL's comparison: numerically within 1e-3 where both are numbers (programs return floats), else equal text. */
export function sameAnswer(answer: string, reference: string): boolean {
  const num = (s: string) => (/^-?[\d,]*\.?\d+(e-?\d+)?$/i.test(s.trim()) ? Number(s.trim().replace(/,/g, '')) : NaN);
  const a = num(answer),
    b = num(reference);
  return Number.isFinite(a) && Number.isFinite(b) ? Math.abs(a - b) < 1e-3 : answer.trim() === reference.trim();
}
