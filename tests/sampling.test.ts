import { describe, expect, it } from 'vitest';
import { applyRepetitionPenalty, argmax, sampleToken } from '../lib/models/sampling.js';
import { seededRandom } from '../lib/util/random.js';

function histogram(logits: number[], opts: Parameters<typeof sampleToken>[1], n = 20000): number[] {
  const rnd = seededRandom(1);
  const counts = new Array(logits.length).fill(0);
  const x = Float32Array.from(logits);
  for (let i = 0; i < n; i++) counts[sampleToken(x, opts, rnd)]++;
  return counts.map((c) => c / n);
}

describe('sampling', () => {
  it('greedy takes the lowest id among ties', () => {
    expect(argmax([1, 3, 3, 2])).toBe(1);
    expect(sampleToken(Float32Array.from([0, 5, 5]), { temperature: 0 }, Math.random)).toBe(1);
  });

  it('temperature 1 samples the softmax distribution', () => {
    const logits = [Math.log(0.5), Math.log(0.3), Math.log(0.2)];
    const h = histogram(logits, { temperature: 1 });
    [0.5, 0.3, 0.2].forEach((p, i) => expect(Math.abs(h[i] - p)).toBeLessThan(0.015));
  });

  it('top-k keeps the k most likely (and ties at the k-th value)', () => {
    const h = histogram([Math.log(0.4), Math.log(0.3), Math.log(0.2), Math.log(0.1)], { temperature: 1, topK: 2 });
    expect(h[2] + h[3]).toBe(0);
    expect(Math.abs(h[0] - 4 / 7)).toBeLessThan(0.015);
    const tie = histogram([2, 1, 1, 0], { temperature: 1, topK: 2 }, 2000);
    expect(tie[2]).toBeGreaterThan(0);
    expect(tie[3]).toBe(0);
  });

  it('top-p keeps the smallest set whose mass reaches p', () => {
    const logits = [Math.log(0.5), Math.log(0.3), Math.log(0.15), Math.log(0.05)];
    const h = histogram(logits, { temperature: 1, topP: 0.8 });
    expect(h[2] + h[3]).toBe(0);
    expect(Math.abs(h[0] - 0.625)).toBeLessThan(0.015);
    // p below the top token's mass still keeps one token
    expect(histogram(logits, { temperature: 1, topP: 0.1 }, 500)[0]).toBe(1);
  });

  it('seeded streams repeat exactly', () => {
    const a = seededRandom(42),
      b = seededRandom(42),
      c = seededRandom(43);
    const xa = Array.from({ length: 5 }, a),
      xb = Array.from({ length: 5 }, b),
      xc = Array.from({ length: 5 }, c);
    expect(xa).toEqual(xb);
    expect(xa).not.toEqual(xc);
    xa.forEach((x) => expect(x >= 0 && x < 1).toBe(true));
  });

  it('repetition penalty divides positive and multiplies negative logits of seen tokens', () => {
    const x = Float32Array.from([2, -2, 1, 4]);
    applyRepetitionPenalty(x, [0, 1, 1], 2);
    expect([...x]).toEqual([1, -4, 1, 4]);
  });
});
