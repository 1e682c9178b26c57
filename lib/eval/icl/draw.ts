import type { Doc, Task } from '../tasks/types.js';

/** Few-shot examples for one instance: the first k, or a seeded draw that never includes the instance itself. */
export function drawShots(order: Task['fewshotOrder'], pool: Doc[], k: number, exclude: string, random: () => number) {
  const candidates = pool.filter((d) => d.id !== exclude);
  if (order === 'first') return candidates.slice(0, k);
  const picked: Doc[] = [];
  const taken = new Set<number>();
  while (picked.length < Math.min(k, candidates.length)) {
    const j = Math.floor(random() * candidates.length);
    if (!taken.has(j)) {
      taken.add(j);
      picked.push(candidates[j]);
    }
  }
  return picked;
}
