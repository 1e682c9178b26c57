import type { Doc } from '../tasks/types.js';

export type KateOrder = 'nearest-last' | 'nearest-first';

export function cosine(a: readonly number[], b: readonly number[]): number {
  let dot = 0,
    na = 0,
    nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

/**
 * KATE (Liu et al. 2022): the k pool examples whose embeddings are nearest the instance's by cosine
 * similarity, never the instance itself; ties go to the earlier pool example. `nearest-last` puts
 * the most similar example next to the instance, as KATE's paper does (its default order);
 * `nearest-first` is LLMBox's.
 */
export function kateNeighbours(
  query: readonly number[],
  selfId: string,
  pool: readonly Doc[],
  poolVectors: readonly (readonly number[])[],
  k: number,
  order: KateOrder,
): Doc[] {
  const ranked = pool
    .map((d, j) => ({ d, j, sim: d.id === selfId ? -Infinity : cosine(query, poolVectors[j]) }))
    .filter((r) => r.sim > -Infinity)
    .sort((a, b) => b.sim - a.sim || a.j - b.j)
    .slice(0, k)
    .map((r) => r.d);
  return order === 'nearest-last' ? ranked.reverse() : ranked;
}

/** The text an instance is compared by: the bare question where the task has one, else its query. */
export const kateText = (d: Doc) => d.question ?? d.query;
