/**
 * Consecutive batches of at most `batchSize` items and about `maxTokens` padded tokens (one item
 * always fits): a forward pass holds several activations of [tokens, ffn] at once, and the wasm heap
 * ends at 4 GiB.
 */
export function tokenBatches<T>(items: T[], tokens: (item: T) => number, batchSize: number, maxTokens: number): T[][] {
  const out: T[][] = [];
  let cur: T[] = [],
    longest = 0;
  for (const item of items) {
    const n = Math.max(longest, tokens(item));
    if (cur.length && (cur.length >= batchSize || (cur.length + 1) * n > maxTokens)) {
      out.push(cur);
      cur = [];
      longest = 0;
    }
    cur.push(item);
    longest = Math.max(longest, tokens(item));
  }
  if (cur.length) out.push(cur);
  return out;
}
