/**
 * SQuAD answer normalisation and scoring, as the official SQuAD v1.1 evaluation script defines them
 * (also used by lm-evaluation-harness for TriviaQA/NQ-style exact match): lower-case, drop
 * punctuation, drop the articles a/an/the, collapse whitespace.
 */
const PUNCT = /[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/g;

export function normalizeAnswer(s: string): string {
  return s
    .toLowerCase()
    .replace(PUNCT, '')
    .replace(/\b(a|an|the)\b/g, ' ')
    .split(/\s+/)
    .filter((w) => w.length > 0)
    .join(' ');
}

/** 1 if the normalised prediction equals any normalised reference, else 0. */
export function exactMatch(prediction: string, references: string[]): number {
  const p = normalizeAnswer(prediction);
  return references.some((r) => normalizeAnswer(r) === p) ? 1 : 0;
}

function tokenF1(prediction: string, reference: string): number {
  const p = normalizeAnswer(prediction).split(' ').filter(Boolean);
  const r = normalizeAnswer(reference).split(' ').filter(Boolean);
  const counts = new Map<string, number>();
  for (const t of r) counts.set(t, (counts.get(t) ?? 0) + 1);
  let same = 0;
  for (const t of p) {
    const c = counts.get(t) ?? 0;
    if (c > 0) {
      same++;
      counts.set(t, c - 1);
    }
  }
  if (same === 0) return 0;
  const precision = same / p.length,
    recall = same / r.length;
  return (2 * precision * recall) / (precision + recall);
}

/** Bag-of-tokens F1 against the best-matching reference. */
export function f1Score(prediction: string, references: string[]): number {
  return Math.max(0, ...references.map((r) => tokenF1(prediction, r)));
}
