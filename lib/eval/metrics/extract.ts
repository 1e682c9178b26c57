/**
 * Answer extraction filters (lm-evaluation-harness's "filters"): each maps generated text to the
 * answer string that is compared with the references. A failed extraction yields INVALID, which
 * never equals a reference.
 */
export const INVALID = '[invalid]';

/** The given capture group of the first (or last) match of a regular expression. */
export function regexFilter(re: RegExp, opts: { group?: number; last?: boolean } = {}): (text: string) => string {
  const global = new RegExp(re.source, re.flags.includes('g') ? re.flags : re.flags + 'g');
  return (text) => {
    const matches = [...text.matchAll(global)];
    const m = opts.last ? matches[matches.length - 1] : matches[0];
    return m ? (m[opts.group ?? 1] ?? m[0]).trim() : INVALID;
  };
}

/** lm-eval's flexible-extract for math word problems: the last number-like token. */
export const lastNumber = regexFilter(/(-?[$0-9.,]{2,})|(-?[0-9]+)/, { group: 0, last: true });

/** A number as written in an answer, without thousands separators, currency or a trailing period. */
export function normalizeNumber(s: string): string {
  let t = s.trim().replace(/[$,]/g, '').replace(/\.$/, '');
  if (/^-?\d+\.0+$/.test(t)) t = t.replace(/\.0+$/, '');
  return t;
}

/** The contents of the last \boxed{...} (or \fbox{...}), braces balanced; INVALID when there is none. */
export function lastBoxed(text: string): string {
  const at = Math.max(text.lastIndexOf('\\boxed'), text.lastIndexOf('\\fbox'));
  if (at < 0) return INVALID;
  let i = text.indexOf('{', at);
  if (i < 0) {
    // "\boxed 5": the argument runs to the next space or dollar sign.
    const m = /^\\boxed ([^$\s]+)/.exec(text.slice(at));
    return m ? m[1] : INVALID;
  }
  let depth = 0;
  const start = i + 1;
  for (; i < text.length; i++) {
    if (text[i] === '{') depth++;
    else if (text[i] === '}' && --depth === 0) return text.slice(start, i);
  }
  return INVALID;
}

const MATH_SUBSTITUTIONS: [string, string][] = [
  ['an ', ''],
  ['a ', ''],
  ['.$', '$'],
  ['\\$', ''],
  ['\\ ', ''],
  [' ', ''],
  ['mbox', 'text'],
  [',\\text{and}', ','],
  ['\\text{and}', ','],
  ['\\text{m}', '\\text{}'],
];
const MATH_REMOVED = [
  'square',
  'ways',
  'integers',
  'dollars',
  'mph',
  'inches',
  'ft',
  'hours',
  'km',
  'units',
  '\\ldots',
  'sue',
  'points',
  'feet',
  'minutes',
  'digits',
  'cents',
  'degrees',
  'cm',
  'gm',
  'pounds',
  'meters',
  'meals',
  'edges',
  'students',
  'childrentickets',
  'multiples',
  '\\text{s}',
  '\\text{.}',
  '\\text{\ns}',
  '\\text{}^2',
  '\\text{}^3',
  '\\text{\n}',
  '\\text{}',
  '\\mathrm{th}',
  '^\\circ',
  '^{\\circ}',
  '\\;',
  ',\\!',
  '{,}',
  '"',
  '\\dots',
];

/**
 * Normalises a final answer to competition math the way Minerva (Lewkowycz et al. 2022, appendix
 * D.1) does before string comparison: units and filler words dropped, \text{} unwrapped, \frac and
 * \sqrt shorthands braced, thousands separators removed.
 */
export function normalizeMathAnswer(answer: string): string {
  let s = answer.split('=').pop()!;
  for (const [from, to] of MATH_SUBSTITUTIONS) s = s.split(from).join(to);
  for (const r of MATH_REMOVED) s = s.split(r).join('');
  s = s.replace(/(.*?)(\$)(.*?)(\$)(.*)/, '$$$3$$');
  s = s.replace(/(\\text\{)(.*?)(\})/g, '$2');
  s = s.replace(/(\\textbf\{)(.*?)(\})/g, '$2');
  s = s.replace(/(\\overline\{)(.*?)(\})/g, '$2');
  s = s.replace(/(\\boxed\{)(.*)(\})/g, '$2');
  s = s.replace(/(frac)([^{])(.)/g, 'frac{$2}{$3}');
  s = s.replace(/(sqrt)([^{])/g, 'sqrt{$2}');
  s = s.replace(/\$/g, '');
  if (/^[\d,]+$/.test(s)) s = s.replace(/,/g, '');
  return s.trim();
}
