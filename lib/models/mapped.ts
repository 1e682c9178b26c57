import { mapWeightFile } from '../engine/native.js';

/**
 * Node's external buffers hold at most 4 GiB (a 7B model's first shard is 9.3 GiB): a file is mapped
 * in windows of about this size, each ending at a tensor's end.
 */
export const MAP_WINDOW = 1 << 30;
const MAX_BUFFER = 2 ** 32;

/**
 * Views of byte ranges [begin, end) of a file, through as few mappings of about `window` bytes as
 * they fit in; null for a range that cannot be a view (its start not 8-byte aligned, as typed views
 * need, or over 4 GiB long) and for all of them where the file cannot be mapped: those are read.
 */
export function mapRanges(
  file: string,
  ranges: readonly [number, number][],
  window = MAP_WINDOW,
): (Uint8Array | null)[] {
  const out: (Uint8Array | null)[] = ranges.map(() => null);
  const order = ranges
    .map((_, i) => i)
    .filter((i) => ranges[i][0] % 8 === 0 && ranges[i][1] > ranges[i][0] && ranges[i][1] - ranges[i][0] <= MAX_BUFFER)
    .sort((a, b) => ranges[a][0] - ranges[b][0]);
  for (let first = 0; first < order.length;) {
    // A window: the next ranges in file order while they end within `window` bytes of its start.
    const start = ranges[order[first]][0];
    let end = ranges[order[first]][1];
    let last = first + 1;
    while (last < order.length && Math.max(end, ranges[order[last]][1]) - start <= window)
      end = Math.max(end, ranges[order[last++]][1]);
    const map = mapWeightFile(file, start, end - start);
    if (!map) return ranges.map(() => null);
    for (const i of order.slice(first, last)) out[i] = map.subarray(ranges[i][0] - start, ranges[i][1] - start);
    first = last;
  }
  return out;
}
