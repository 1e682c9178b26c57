import { LlmboxError } from '../errors.js';
import { seededRandom } from '../util/random.js';
import { DEFAULTS } from '../util/defaults.js';

export interface MixtureOptions {
  /**
   * `ratio` (LLMBox's --dataset_ratio: `total` items, each source contributing its share, repeated in
   * shuffled passes when it is too small), `concat` (all of each source in order), or `interleave`
   * (sources drawn with the ratios as probabilities until one runs out, `first_exhausted`, or until
   * all have been seen whole, `all_exhausted`, restarting the finished ones).
   */
  strategy?: 'ratio' | 'concat' | 'interleave';
  ratios?: number[];
  total?: number;
  stopping?: 'first_exhausted' | 'all_exhausted';
  seed?: number;
}

export interface Mixture<T> {
  items: { source: number; item: T }[];
  /** Share of the mixture from each source, as realised. */
  proportions: number[];
  counts: number[];
}

export function shuffled<T>(xs: readonly T[], random: () => number): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Mixes training sources (see MixtureOptions); the result is deterministic for a seed. */
export function mix<T>(sources: T[][], opts: MixtureOptions = {}): Mixture<T> {
  if (!sources.length || sources.some((s) => s.length === 0))
    throw new LlmboxError('every dataset in a mixture needs at least one example', { field: '--dataset' });
  const strategy = opts.strategy ?? (opts.ratios ? 'ratio' : 'concat');
  const ratios = opts.ratios ?? sources.map(() => 1 / sources.length);
  if (ratios.length !== sources.length || ratios.some((r) => !(r >= 0)) || ratios.every((r) => r === 0)) {
    throw new LlmboxError(
      `--dataset_ratio needs one non-negative ratio per dataset (${sources.length}), got ${ratios.join(' ')}`,
      { field: '--dataset_ratio' },
    );
  }
  const weights = ratios.map((r) => r / ratios.reduce((a, b) => a + b, 0));
  const random = seededRandom(opts.seed ?? DEFAULTS.train.seed);
  let items: { source: number; item: T }[] = [];
  if (strategy === 'concat') {
    items = sources.flatMap((s, i) => s.map((item) => ({ source: i, item })));
  } else if (strategy === 'ratio') {
    const total = opts.total ?? sources.reduce((a, s) => a + s.length, 0);
    // Largest remainders, so the counts sum to the total exactly.
    const exact = weights.map((w) => w * total);
    const counts = exact.map(Math.floor);
    const order = exact.map((e, i) => [e - Math.floor(e), i]).sort((a, b) => b[0] - a[0]);
    for (let k = 0; k < total - counts.reduce((a, b) => a + b, 0); k++) counts[order[k][1]]++;
    sources.forEach((s, i) => {
      const picked: T[] = [];
      while (picked.length < counts[i]) picked.push(...shuffled(s, random).slice(0, counts[i] - picked.length));
      items.push(...picked.map((item) => ({ source: i, item })));
    });
    items = shuffled(items, random);
  } else {
    const pos = sources.map(() => 0),
      seenAll = sources.map(() => false);
    const orders = sources.map((s) => shuffled(s, random));
    const cumulative = weights.map((_, i) => weights.slice(0, i + 1).reduce((a, b) => a + b, 0));
    for (;;) {
      const u = random();
      const found = cumulative.findIndex((c) => u < c);
      // Rounding can leave the last cumulative weight a hair under 1.
      const i = found < 0 ? weights.length - 1 : found;
      if (pos[i] === orders[i].length) {
        seenAll[i] = true;
        if (
          (opts.stopping ?? 'first_exhausted') === 'first_exhausted' ||
          seenAll.every((x, j) => x || weights[j] === 0)
        )
          break;
        orders[i] = shuffled(sources[i], random);
        pos[i] = 0;
      }
      items.push({ source: i, item: orders[i][pos[i]++] });
    }
  }
  const counts = sources.map((_, i) => items.filter((x) => x.source === i).length);
  return { items, counts, proportions: counts.map((c) => c / Math.max(1, items.length)) };
}
