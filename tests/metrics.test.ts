import { describe, expect, it } from 'vitest';
import {
  bootstrapStderr,
  median,
  exactMatch,
  f1Score,
  mean,
  normalizeAnswer,
  passAtK,
  stderrOfMean,
} from '../lib/eval/metrics/index.js';

describe('SQuAD normalisation, exact match and F1 (official v1.1 definitions)', () => {
  it('lower-cases, strips punctuation and articles, collapses whitespace', () => {
    expect(normalizeAnswer('The  Eiffel Tower!')).toBe('eiffel tower');
    expect(normalizeAnswer('An apple, a day.')).toBe('apple day');
    expect(normalizeAnswer("Theatre's (Paris)")).toBe('theatres paris'); // "the" only as a whole word
  });

  it('exact match takes the best reference', () => {
    expect(exactMatch('the eiffel tower', ['Eiffel Tower', 'La Tour Eiffel'])).toBe(1);
    expect(exactMatch('tower', ['Eiffel Tower'])).toBe(0);
  });

  it('F1 counts shared tokens with multiplicity', () => {
    // pred: [paris, france], ref: [paris]: precision 1/2, recall 1 -> 2/3
    expect(f1Score('Paris, France', ['Paris'])).toBeCloseTo(2 / 3, 12);
    expect(f1Score('new new york', ['new york'])).toBeCloseTo(0.8, 12); // same 2, p 2/3, r 1
    expect(f1Score('london', ['paris', 'London'])).toBe(1);
    expect(f1Score('', ['x'])).toBe(0);
  });
});

describe('pass@k (Chen et al. 2021 unbiased estimator)', () => {
  it('matches 1 - C(n-c,k)/C(n,k) on worked values', () => {
    expect(passAtK(10, 3, 1)).toBeCloseTo(0.3, 12);
    expect(passAtK(10, 3, 5)).toBeCloseTo(1 - 21 / 252, 12);
    expect(passAtK(200, 0, 10)).toBe(0);
    expect(passAtK(5, 3, 3)).toBe(1); // fewer than k failures: some k-subset always passes
    // Independent check with exact binomials in BigInt: 1 - C(187, 100) / C(200, 100).
    const choose = (n: number, k: number) => {
      let r = 1n;
      for (let i = 1; i <= k; i++) r = (r * BigInt(n - k + i)) / BigInt(i);
      return r;
    };
    const ratio = Number((choose(187, 100) * 10n ** 18n) / choose(200, 100)) / 1e18;
    expect(passAtK(200, 13, 100)).toBeCloseTo(1 - ratio, 12);
  });

  it('rejects impossible counts', () => {
    expect(() => passAtK(5, 6, 1)).toThrow(/0 <= c <= n/);
    expect(() => passAtK(5, 1, 6)).toThrow();
  });
});

describe('median', () => {
  it('is the middle value, or the mean of the two middle ones; NaN for none', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([7])).toBe(7);
    expect(median([])).toBeNaN();
  });
});

describe('standard errors', () => {
  it('stderr of the mean uses the n-1 variance', () => {
    // values 1,0,1,1: mean .75, sample var = (3*.0625 + .5625)/3 = .25, se = sqrt(.25/4) = .25
    expect(stderrOfMean([1, 0, 1, 1])).toBeCloseTo(0.25, 12);
  });

  it('bootstrap stderr of a mean approaches the analytic value and is reproducible', () => {
    const xs = Array.from({ length: 400 }, (_, i) => (i % 3 === 0 ? 1 : 0));
    const b1 = bootstrapStderr(xs, mean, 2000, 7);
    expect(b1).toBe(bootstrapStderr(xs, mean, 2000, 7));
    expect(Math.abs(b1 - stderrOfMean(xs)) / stderrOfMean(xs)).toBeLessThan(0.1);
  });
});
