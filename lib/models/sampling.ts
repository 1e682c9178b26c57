export interface SamplingOptions {
  /** 0 (the default) decodes greedily. */
  temperature?: number;
  topK?: number;
  topP?: number;
  /** > 1 discourages tokens already in the sequence (CTRL / Hugging Face semantics). */
  repetitionPenalty?: number;
}

/** Index of the largest value, the lowest index on ties. */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** Applies the repetition penalty in place: positive logits are divided by it, negative ones multiplied. */
export function applyRepetitionPenalty(logits: Float32Array, seen: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  for (const id of new Set(seen)) logits[id] = logits[id] > 0 ? logits[id] / penalty : logits[id] * penalty;
}

/**
 * Picks the next token from one row of logits: greedy at temperature 0, else samples after
 * temperature, top-k (ties at the k-th value kept) and top-p (smallest set reaching p, at least one).
 */
export function sampleToken(logits: Float32Array, opts: SamplingOptions, random: () => number): number {
  const temperature = opts.temperature ?? 0;
  if (temperature <= 0) return argmax(logits);
  const n = logits.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => logits[b] - logits[a] || a - b);
  let keep = n;
  if (opts.topK && opts.topK > 0 && opts.topK < n) {
    const kth = logits[order[opts.topK - 1]];
    keep = opts.topK;
    while (keep < n && logits[order[keep]] === kth) keep++;
  }
  const max = logits[order[0]];
  const probs = new Float64Array(keep);
  let sum = 0;
  for (let i = 0; i < keep; i++) sum += probs[i] = Math.exp((logits[order[i]] - max) / temperature);
  if (opts.topP !== undefined && opts.topP < 1) {
    let cum = 0,
      cut = keep;
    for (let i = 0; i < keep; i++) {
      cum += probs[i] / sum;
      if (cum >= opts.topP) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
    sum = 0;
    for (let i = 0; i < keep; i++) sum += probs[i];
  }
  let r = random() * sum;
  for (let i = 0; i < keep; i++) {
    r -= probs[i];
    if (r < 0) return order[i];
  }
  return order[keep - 1];
}
