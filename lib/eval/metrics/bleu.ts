/**
 * Corpus BLEU (Papineni et al. 2002) as sacrebleu computes it by default: 13a tokenisation, n-grams
 * up to 4, clipped counts against all references, the closest reference length (shorter on ties)
 * for the brevity penalty, and "exp" smoothing of zero-count orders. Scores are on a 0-100 scale.
 */
export type BleuTokenizer = '13a' | 'intl' | 'zh' | 'none';

export interface BleuScore {
  score: number;
  precisions: number[];
  bp: number;
  sysLen: number;
  refLen: number;
}

function tokenize13a(line: string): string {
  let s = line
    .replace(/<skipped>/g, '')
    .replace(/-\n/g, '')
    .replace(/\n/g, ' ');
  if (s.includes('&'))
    s = s
      .replace(/&quot;/g, '"')
      .replace(/&amp;/g, '&')
      .replace(/&lt;/g, '<')
      .replace(/&gt;/g, '>');
  s = ` ${s} `
    .replace(/([{-~[-` -&(-+:-@/])/g, ' $1 ')
    .replace(/([^0-9])([.,])/g, '$1 $2 ')
    .replace(/([.,])([^0-9])/g, ' $1 $2')
    .replace(/([0-9])(-)/g, '$1 $2 ');
  return s.split(/\s+/).filter(Boolean).join(' ');
}

/** sacrebleu's "intl": punctuation split off unless between digits, symbols always. */
function tokenizeIntl(line: string): string {
  return line
    .replace(/(\P{N})(\p{P})/gu, '$1 $2 ')
    .replace(/(\p{P})(\P{N})/gu, ' $1 $2')
    .replace(/(\p{S})/gu, ' $1 ')
    .split(/\s+/)
    .filter(Boolean)
    .join(' ');
}

/** Chinese and Japanese: every CJK character is a token, the rest as 13a (sacrebleu's "zh" idea). */
function tokenizeCjk(line: string): string {
  return tokenize13a(line.replace(/([\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\u3000-\u303f\uff00-\uffef])/g, ' $1 '));
}

export function bleuTokenize(line: string, tokenizer: BleuTokenizer = '13a'): string[] {
  const s = line.trim();
  const t =
    tokenizer === '13a'
      ? tokenize13a(s)
      : tokenizer === 'intl'
        ? tokenizeIntl(s)
        : tokenizer === 'zh'
          ? tokenizeCjk(s)
          : s;
  return t.split(' ').filter(Boolean);
}

function ngramCounts(tokens: string[], n: number): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const g = tokens.slice(i, i + n).join('\u0001');
    m.set(g, (m.get(g) ?? 0) + 1);
  }
  return m;
}

/**
 * BLEU of hypotheses against reference streams: `references[r][i]` is reference r of hypothesis i
 * (sacrebleu's layout).
 */
export function corpusBleu(
  hypotheses: string[],
  references: string[][],
  opts: { tokenizer?: BleuTokenizer; lowercase?: boolean } = {},
): BleuScore {
  const prep = (s: string) => bleuTokenize(opts.lowercase ? s.toLowerCase() : s, opts.tokenizer);
  const correct = [0, 0, 0, 0],
    total = [0, 0, 0, 0];
  let sysLen = 0,
    refLen = 0;
  hypotheses.forEach((hyp, i) => {
    const h = prep(hyp);
    const refs = references.map((stream) => prep(stream[i]));
    sysLen += h.length;
    let closest = refs[0].length;
    for (const r of refs) {
      const d = Math.abs(r.length - h.length),
        best = Math.abs(closest - h.length);
      if (d < best || (d === best && r.length < closest)) closest = r.length;
    }
    refLen += closest;
    for (let n = 1; n <= 4; n++) {
      const maxRef = new Map<string, number>();
      for (const r of refs) for (const [g, c] of ngramCounts(r, n)) maxRef.set(g, Math.max(maxRef.get(g) ?? 0, c));
      for (const [g, c] of ngramCounts(h, n)) {
        correct[n - 1] += Math.min(c, maxRef.get(g) ?? 0);
        total[n - 1] += c;
      }
    }
  });
  const bp = sysLen < refLen ? (sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0) : 1;
  const precisions = [0, 0, 0, 0];
  if (correct.every((c) => c === 0)) return { score: 0, precisions, bp, sysLen, refLen };
  let smooth = 1;
  for (let n = 0; n < 4; n++) {
    if (total[n] === 0) break;
    if (correct[n] === 0) {
      smooth *= 2;
      precisions[n] = 100 / (smooth * total[n]);
    } else precisions[n] = (100 * correct[n]) / total[n];
  }
  const logs = precisions.map((p) => (p === 0 ? -9999999999 : Math.log(p)));
  return { score: bp * Math.exp(logs.reduce((a, b) => a + b, 0) / 4), precisions, bp, sysLen, refLen };
}

/** BLEU of one hypothesis against its references (lm-eval's truthfulqa uses corpus BLEU of a single pair). */
export function sentenceBleu(hypothesis: string, references: string[], tokenizer: BleuTokenizer = '13a'): number {
  return corpusBleu(
    [hypothesis],
    references.map((r) => [r]),
    { tokenizer },
  ).score;
}
