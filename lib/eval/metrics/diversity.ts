/** Word n-grams of a text (split on whitespace), as space-joined strings. */
function ngrams(text: string, n: number): string[] {
  const words = text.split(/\s+/).filter(Boolean);
  return Array.from({ length: Math.max(0, words.length - n + 1) }, (_, i) => words.slice(i, i + n).join(' '));
}

/**
 * distinct-n (Li et al. 2016): distinct word n-grams over all n-grams, pooled over the texts; 1 when
 * nothing repeats, near 0 when the texts say the same thing. NaN when the texts hold no n-gram.
 */
export function distinctN(texts: string[], n: number): number {
  const all = texts.flatMap((t) => ngrams(t, n));
  return all.length ? new Set(all).size / all.length : NaN;
}

/**
 * seq-rep-n (Welleck et al. 2019): the share of a text's word n-grams that repeat an earlier one,
 * 1 - distinct / total within the one text; the degeneration of greedy decoding shows here. NaN
 * when the text holds no n-gram.
 */
export function repetitionRate(text: string, n: number): number {
  const all = ngrams(text, n);
  return all.length ? 1 - new Set(all).size / all.length : NaN;
}
