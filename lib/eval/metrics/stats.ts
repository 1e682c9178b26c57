import { seededRandom } from '../../util/random.js';

/** Probabilities from log-likelihoods (softmax, shifted by the maximum so nothing overflows). */
export function softmax(logits: number[]): number[] {
  const max = Math.max(...logits);
  const p = logits.map((l) => Math.exp(l - max));
  const z = p.reduce((a, b) => a + b, 0);
  return p.map((x) => x / z);
}

/** The middle value (the mean of the two middle ones for an even count); NaN for none. */
export function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

export function mean(xs: number[]): number {
  if (xs.length === 0) return NaN;
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/** Sample standard deviation, with the unbiased (n - 1) variance. */
export function sampleStd(xs: number[]): number {
  const n = xs.length;
  if (n < 2) return NaN;
  const m = mean(xs);
  let ss = 0;
  for (const x of xs) ss += (x - m) ** 2;
  return Math.sqrt(ss / (n - 1));
}

/** Standard error of the mean, sqrt(var / n) with the unbiased (n - 1) variance, as lm-eval reports. */
export function stderrOfMean(xs: number[]): number {
  return sampleStd(xs) / Math.sqrt(xs.length);
}

/**
 * Bootstrap standard error of any aggregate: the standard deviation of `aggregate` over `iters`
 * resamples (with replacement) of the per-instance values. Seeded, so reruns agree.
 */
export function bootstrapStderr<T>(items: T[], aggregate: (sample: T[]) => number, iters = 1000, seed = 1234): number {
  const n = items.length;
  if (n < 2) return NaN;
  const random = seededRandom(seed);
  const values: number[] = [];
  const sample = new Array<T>(n);
  for (let it = 0; it < iters; it++) {
    for (let i = 0; i < n; i++) sample[i] = items[Math.floor(random() * n)];
    values.push(aggregate(sample));
  }
  return sampleStd(values);
}
