import { describe, expect, it } from 'vitest';
import { mix } from '../lib/data/mixture.js';

const range = (n: number, tag: string) => Array.from({ length: n }, (_, i) => `${tag}${i}`);

describe('data mixtures', () => {
  it('ratio: exactly the asked shares of the total, small sources repeated in whole shuffled passes', () => {
    const sources = [range(1000, 'a'), range(50, 'b'), range(300, 'c')];
    const m = mix(sources, { ratios: [0.3, 0.5, 0.2], total: 1000, seed: 1 });
    expect(m.items).toHaveLength(1000);
    expect(m.counts).toEqual([300, 500, 200]);
    expect(m.proportions).toEqual([0.3, 0.5, 0.2]);
    // b (50 items) fills 500 slots: every item exactly 10 times.
    const b = new Map<string, number>();
    for (const x of m.items) if (x.source === 1) b.set(x.item, (b.get(x.item) ?? 0) + 1);
    expect(b.size).toBe(50);
    expect(new Set(b.values())).toEqual(new Set([10]));
    // a: 300 distinct items, no repeats.
    expect(new Set(m.items.filter((x) => x.source === 0).map((x) => x.item)).size).toBe(300);
    // Shuffled together, and the same for the same seed.
    expect(m.items.slice(0, 50).some((x) => x.source !== m.items[0].source)).toBe(true);
    expect(mix(sources, { ratios: [0.3, 0.5, 0.2], total: 1000, seed: 1 }).items).toEqual(m.items);
    expect(mix(sources, { ratios: [1, 1, 1], total: 10 }).counts.reduce((a, b) => a + b, 0)).toBe(10);
  });

  it('interleave: probabilities follow the ratios; first_exhausted under-samples, all_exhausted over-samples', () => {
    const sources = [range(2000, 'a'), range(100, 'b')];
    const under = mix(sources, { strategy: 'interleave', ratios: [0.5, 0.5], seed: 3 });
    // Stops when b (100 items) runs out: about 100 of each.
    expect(under.counts[1]).toBe(100);
    expect(Math.abs(under.counts[0] - 100)).toBeLessThan(40);
    const over = mix(sources, { strategy: 'interleave', ratios: [0.5, 0.5], stopping: 'all_exhausted', seed: 3 });
    expect(new Set(over.items.filter((x) => x.source === 0).map((x) => x.item)).size).toBe(2000);
    expect(over.counts[1]).toBeGreaterThan(1500);
    expect(Math.abs(over.proportions[0] - 0.5)).toBeLessThan(0.03);
  });

  it('concat keeps order; bad ratios are refused', () => {
    expect(mix([['x', 'y'], ['z']]).items.map((x) => x.item)).toEqual(['x', 'y', 'z']);
    expect(() => mix([['x'], ['y']], { ratios: [1] })).toThrow(/one non-negative ratio per dataset \(2\)/);
    expect(() => mix([['x'], []])).toThrow(/at least one example/);
  });
});
