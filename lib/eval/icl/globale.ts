import { shuffled } from '../../data/mixture.js';

/** Entropy (nats) of the distribution of predicted labels: GlobalE's score of one ordering. */
export function labelEntropy(labels: readonly number[]): number {
  const counts = new Map<number, number>();
  for (const l of labels) counts.set(l, (counts.get(l) ?? 0) + 1);
  let h = 0;
  for (const c of counts.values()) {
    const p = c / labels.length;
    h -= p * Math.log(p);
  }
  return h;
}

/** Every permutation of 0..k-1 in lexicographic order. */
export function permutations(k: number): number[][] {
  if (k === 0) return [[]];
  return permutations(k - 1)
    .flatMap((p) => Array.from({ length: k }, (_, at) => [...p.slice(0, at), k - 1, ...p.slice(at)]))
    .sort((a, b) => {
      for (let i = 0; i < k; i++) if (a[i] !== b[i]) return a[i] - b[i];
      return 0;
    });
}

/**
 * The orderings GlobalE tries: all k! when there are at most `max`, else `max` distinct seeded
 * shuffles, the given order first.
 */
export function orderings(k: number, max: number, random: () => number): number[][] {
  let total = 1;
  for (let i = 2; i <= k && total <= max; i++) total *= i;
  if (total <= max) return permutations(k);
  const identity = Array.from({ length: k }, (_, i) => i);
  const seen = new Set([identity.join(',')]);
  const out = [identity];
  while (out.length < max) {
    const p = shuffled(identity, random);
    if (!seen.has(p.join(','))) {
      seen.add(p.join(','));
      out.push(p);
    }
  }
  return out;
}

/**
 * GlobalE (Lu et al. 2022): the ordering whose predictions on the probe set are spread most evenly
 * over the labels (highest entropy), since a prompt order that makes the model predict one label
 * for everything is a bad one. Ties go to the earlier ordering.
 */
export function bestByEntropy(predicted: readonly (readonly number[])[]): { best: number; entropies: number[] } {
  const entropies = predicted.map(labelEntropy);
  let best = 0;
  entropies.forEach((h, i) => {
    if (h > entropies[best] + 1e-12) best = i;
  });
  return { best, entropies };
}
