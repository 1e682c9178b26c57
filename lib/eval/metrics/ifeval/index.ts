import { CHECKERS, type Kwargs } from './checkers.js';

export { CHECKERS, type Kwargs } from './checkers.js';
export { detectLanguage } from './language.js';

export interface Instruction {
  id: string;
  kwargs: Kwargs;
}

/**
 * The loose variants of a response (IFEval's "loose" accuracy): as given, without markdown
 * asterisks, and each without its first line, its last line or both (where a model wrote a
 * preamble such as "Sure, here it is:" or a closing remark).
 */
export function looseVariants(response: string): string[] {
  const variants = (r: string) => {
    const lines = r.split('\n');
    return [
      r,
      lines.slice(1).join('\n').trim(),
      lines.slice(0, -1).join('\n').trim(),
      lines.slice(1, -1).join('\n').trim(),
    ];
  };
  const [r, first, last, both] = variants(response);
  const [s, sFirst, sLast, sBoth] = variants(response.replaceAll('*', ''));
  return [r, s, first, last, both, sFirst, sLast, sBoth];
}

/** Whether each instruction is followed, strictly (the response as it is) and loosely (any loose variant). */
export function followed(response: string, instructions: Instruction[]): { strict: boolean[]; loose: boolean[] } {
  const check = (r: string, ins: Instruction) => r.trim() !== '' && CHECKERS[ins.id](r, ins.kwargs);
  const variants = looseVariants(response);
  return {
    strict: instructions.map((ins) => check(response, ins)),
    loose: instructions.map((ins) => variants.some((v) => check(v, ins))),
  };
}
