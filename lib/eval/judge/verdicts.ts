/**
 * How MT-Bench (FastChat's llm_judge) reads a judge's reply: a rating "[[8]]" (else the first
 * "[8]"), -1 when there is none; a pairwise verdict "[[A]]", "[[B]]" or "[[C]]" (a tie), "error"
 * when there is none.
 */
export function parseRating(judgment: string): number {
  const m = /\[\[(\d+\.?\d*)\]\]/.exec(judgment) ?? /\[(\d+\.?\d*)\]/.exec(judgment);
  return m ? Number(m[1]) : -1;
}

export type Verdict = 'A' | 'B' | 'tie' | 'error';

export function parseVerdict(judgment: string): Verdict {
  if (judgment.includes('[[A]]')) return 'A';
  if (judgment.includes('[[B]]')) return 'B';
  if (judgment.includes('[[C]]')) return 'tie';
  return 'error';
}

/**
 * A model's result against a baseline from two judgments with the answers in both positions
 * (model as A, then as B), as FastChat's pairwise-baseline mode combines them: the same winner in
 * both orders wins; disagreement, ties and failures are a tie.
 */
export function combineOrders(modelFirst: Verdict, modelSecond: Verdict): 'win' | 'loss' | 'tie' {
  const asModel = (v: Verdict, modelIs: 'A' | 'B') =>
    v === modelIs ? 'win' : v === 'tie' || v === 'error' ? 'tie' : 'loss';
  const a = asModel(modelFirst, 'A'),
    b = asModel(modelSecond, 'B');
  return a === b ? a : 'tie';
}

/** Fills a FastChat prompt template's {name} fields. */
export function fillTemplate(template: string, fields: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (whole, name: string) => (name in fields ? fields[name] : whole));
}
