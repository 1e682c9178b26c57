import { describe, expect, it } from 'vitest';
import { majorityVote } from '../lib/eval/methods/generation.js';
import {
  distinctN,
  repetitionRate,
  bleuTokenize,
  corpusBleu,
  INVALID,
  lastBoxed,
  lastNumber,
  normalizeMathAnswer,
  normalizeNumber,
  regexFilter,
  rougeL,
  rougeN,
} from '../lib/eval/metrics/index.js';

describe('BLEU (sacrebleu-compatible)', () => {
  it("reproduces the corpus score in sacrebleu's README: 48.53 with 82.4/50.0/45.5/37.5, BP 0.943", () => {
    const sys = ['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.'];
    const refs = [
      ['The dog bit the man.', 'It was not unexpected.', 'The man bit him first.'],
      ['The dog had bit the man.', 'No one was surprised.', 'The man had bitten the dog.'],
    ];
    const b = corpusBleu(sys, refs);
    expect(b.score).toBeCloseTo(48.53, 2);
    expect(b.precisions.map((p) => Number(p.toFixed(1)))).toEqual([82.4, 50.0, 45.5, 37.5]);
    expect(b.bp).toBeCloseTo(0.943, 3);
    expect(b.sysLen).toBe(17);
    expect(b.refLen).toBe(18);
  });

  it('tokenizes as 13a: punctuation split, except inside numbers', () => {
    expect(bleuTokenize('Hello, world! It costs $3,000.50 (approx.)')).toEqual([
      'Hello',
      ',',
      'world',
      '!',
      'It',
      'costs',
      '$',
      '3,000.50',
      '(',
      'approx',
      '.',
      ')',
    ]);
  });

  it('is 100 for an identical sentence and 0 with no overlap', () => {
    expect(corpusBleu(['a quick brown fox jumps'], [['a quick brown fox jumps']]).score).toBeCloseTo(100, 10);
    expect(corpusBleu(['x y z w'], [['a b c d']]).score).toBe(0);
  });
});

describe('ROUGE (rouge_score defaults)', () => {
  it('matches the rouge_score README example', () => {
    const target = 'The quick brown fox jumps over the lazy dog',
      pred = 'The quick brown dog jumps on the log.';
    const r1 = rougeN(target, pred, 1),
      rl = rougeL(target, pred);
    expect(r1.precision).toBeCloseTo(0.75, 12);
    expect(r1.recall).toBeCloseTo(2 / 3, 12);
    expect(r1.fmeasure).toBeCloseTo(0.7058823529411765, 12);
    expect(rl.precision).toBeCloseTo(0.625, 12);
    expect(rl.recall).toBeCloseTo(0.5555555555555556, 12);
    expect(rl.fmeasure).toBeCloseTo(0.5882352941176471, 12);
    // bigrams: "the quick", "quick brown" shared; 7 in the prediction, 8 in the target
    const r2 = rougeN(target, pred, 2);
    expect(r2.precision).toBeCloseTo(2 / 7, 12);
    expect(r2.recall).toBeCloseTo(2 / 8, 12);
  });
});

describe('answer extraction', () => {
  it('reads GSM8K answers strictly ("#### N") and flexibly (last number), as lm-eval', () => {
    const strict = regexFilter(/#### (-?[0-9.,]+)/);
    const text = 'She has 3 + 4 = 7 apples.\n#### 1,200';
    expect(normalizeNumber(strict(text))).toBe('1200');
    expect(normalizeNumber(lastNumber('So she earns $18. The answer is 18.'))).toBe('18');
    expect(strict('no final answer here')).toBe(INVALID);
    expect(normalizeNumber('$1,234.00')).toBe('1234');
  });

  it('takes the last \\boxed{} with nested braces and normalises MATH answers as Minerva', () => {
    expect(lastBoxed('so \\boxed{2} then \\boxed{\\frac{1}{2}}.')).toBe('\\frac{1}{2}');
    expect(lastBoxed('no box')).toBe(INVALID);
    expect(normalizeMathAnswer('\\frac12')).toBe('\\frac{1}{2}');
    expect(normalizeMathAnswer('10\\text{ inches}')).toBe('10');
    expect(normalizeMathAnswer('x = 5')).toBe('5');
    expect(normalizeMathAnswer('\\$1,000')).toBe('1000');
    expect(normalizeMathAnswer('\\sqrt2')).toBe('\\sqrt{2}');
    expect(normalizeMathAnswer('90^\\circ')).toBe('90');
  });

  it('votes for the most frequent answer, first seen on ties', () => {
    expect(majorityVote(['3', '5', '5', '3', '7', '5'])).toBe('5');
    expect(majorityVote(['a', 'b'])).toBe('a');
  });
});

describe('diversity of generated text', () => {
  it('distinct-n pools n-grams over texts; seq-rep-n counts repeats within one', () => {
    // "a b a b": bigrams ab, ba, ab -> 2 distinct of 3.
    expect(distinctN(['a b a b'], 2)).toBeCloseTo(2 / 3, 12);
    // Pooled: ab, bc (first) and ab, bd (second) -> 3 distinct of 4.
    expect(distinctN(['a b c', 'a b d'], 2)).toBeCloseTo(3 / 4, 12);
    expect(distinctN(['one two three'], 1)).toBe(1);
    expect(distinctN(['single'], 2)).toBeNaN();
    // "the cat the cat the cat": trigrams tct, cth, tct, cth -> 2 distinct of 4 -> rep 0.5.
    expect(repetitionRate('the cat the cat the cat', 3)).toBeCloseTo(0.5, 12);
    expect(repetitionRate('no words repeat in this line', 2)).toBe(0);
    expect(repetitionRate('  spaced\n\tout   words  ', 1)).toBe(0);
    expect(repetitionRate('x', 2)).toBeNaN();
  });
});
