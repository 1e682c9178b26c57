/**
 * ROUGE-1, ROUGE-2 and ROUGE-L F-measures (Lin 2004) with Google's rouge_score defaults: lowercase,
 * every run of non-alphanumeric characters is a separator, no stemming.
 */
export interface RougeScore {
  precision: number;
  recall: number;
  fmeasure: number;
}

export function rougeTokenize(text: string): string[] {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, ' ')
    .split(' ')
    .filter(Boolean);
}

function score(overlap: number, predLen: number, refLen: number): RougeScore {
  const precision = predLen ? overlap / predLen : 0,
    recall = refLen ? overlap / refLen : 0;
  return { precision, recall, fmeasure: precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0 };
}

export function rougeN(reference: string, prediction: string, n: number): RougeScore {
  const grams = (t: string[]) => {
    const m = new Map<string, number>();
    for (let i = 0; i + n <= t.length; i++)
      m.set(t.slice(i, i + n).join(' '), (m.get(t.slice(i, i + n).join(' ')) ?? 0) + 1);
    return m;
  };
  const r = grams(rougeTokenize(reference)),
    p = grams(rougeTokenize(prediction));
  let overlap = 0;
  for (const [g, c] of p) overlap += Math.min(c, r.get(g) ?? 0);
  const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  return score(overlap, sum(p), sum(r));
}

export function rougeL(reference: string, prediction: string): RougeScore {
  const r = rougeTokenize(reference),
    p = rougeTokenize(prediction);
  const row = new Array<number>(p.length + 1).fill(0);
  for (let i = 1; i <= r.length; i++) {
    let diag = 0;
    for (let j = 1; j <= p.length; j++) {
      const up = row[j];
      row[j] = r[i - 1] === p[j - 1] ? diag + 1 : Math.max(row[j], row[j - 1]);
      diag = up;
    }
  }
  return score(row[p.length], p.length, r.length);
}
