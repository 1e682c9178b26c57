import { LlmboxError } from '../errors.js';
import type { Example } from '../data/tokenize.js';

/**
 * One row of a training batch: token ids, which tokens are targets (predicted from the tokens before
 * them), and a segment id per token (1, 2, ... for the examples packed into the row; 0 for padding).
 */
export interface TrainingRow {
  ids: number[];
  targets: Uint8Array;
  segments: number[];
}

/** Training rows by index: an array in memory, or rows read from disk on demand (pre-training streams). */
export interface RowSource {
  readonly length: number;
  get(i: number): TrainingRow;
}

export const rowArray = (rows: TrainingRow[]): RowSource => ({ length: rows.length, get: (i) => rows[i] });

export interface RowsReport {
  rows: TrainingRow[];
  /** Real tokens / (rows x max length): how much of the compute holds data. */
  utilisation: number;
  /** Examples cut to the maximum length. */
  truncated: number;
  /** Examples left out because truncation removed all their targets (the prompt fills the row). */
  dropped: number;
}

function truncate(ex: Example, maxLength: number): Example {
  return ex.inputIds.length <= maxLength
    ? ex
    : { inputIds: ex.inputIds.slice(0, maxLength), labelMask: ex.labelMask.slice(0, maxLength) };
}

/** Tokens that hold data (segment id not 0) in rows of segment ids. */
export function realTokens(segments: number[][]): number {
  return segments.reduce((n, row) => n + row.filter((s) => s !== 0).length, 0);
}

function report(rows: TrainingRow[], maxLength: number, truncated: number, dropped = 0): RowsReport {
  const real = realTokens(rows.map((r) => r.segments));
  return { rows, utilisation: rows.length ? real / (rows.length * maxLength) : 0, truncated, dropped };
}

/**
 * Examples cut to the row length. When the prompt alone fills the row, the cut keeps the prompt's last
 * half-row and the reply's beginning instead of a row with nothing to learn. Examples with no target
 * at all are dropped (position 0 is never predicted).
 */
function fit(examples: Example[], maxLength: number): { kept: Example[]; truncated: number; dropped: number } {
  let truncated = 0,
    dropped = 0;
  const kept: Example[] = [];
  for (const e of examples) {
    if (e.inputIds.length > maxLength) truncated++;
    let ex = truncate(e, maxLength);
    if (!ex.labelMask.subarray(1).some((m) => m === 1)) {
      const first = e.labelMask.indexOf(1, 1);
      if (first < 0) {
        dropped++;
        continue;
      }
      const start = Math.max(0, first - (maxLength >> 1));
      ex = {
        inputIds: e.inputIds.slice(start, start + maxLength),
        labelMask: e.labelMask.slice(start, start + maxLength),
      };
    }
    kept.push(ex);
  }
  return { kept, truncated, dropped };
}

/** One example per row (padding comes later, per batch). */
export function unpackedRows(examples: Example[], maxLength: number): RowsReport {
  const { kept, truncated, dropped } = fit(examples, maxLength);
  const rows = kept.map((ex) => ({ ids: ex.inputIds, targets: ex.labelMask, segments: ex.inputIds.map(() => 1) }));
  return report(rows, maxLength, truncated, dropped);
}

/**
 * Instruction tuning with packing: examples bin-packed into rows of at most `maxLength` tokens by
 * greedy knapsack (longest first, each into the fullest row it still fits), each example its own
 * segment so attention and positions never cross examples. Deterministic for a given input order.
 */
export function packRows(examples: Example[], maxLength: number): RowsReport {
  const { kept, truncated, dropped } = fit(examples, maxLength);
  const items = kept.map((ex, i) => ({ ex, i }));
  items.sort((a, b) => b.ex.inputIds.length - a.ex.inputIds.length || a.i - b.i);
  // Rows kept sorted by free space (ascending), so the best fit is the first row with room.
  const bins: { free: number; members: Example[] }[] = [];
  for (const { ex } of items) {
    const n = ex.inputIds.length;
    let lo = 0,
      hi = bins.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (bins[mid].free >= n) hi = mid;
      else lo = mid + 1;
    }
    const bin = lo < bins.length ? bins.splice(lo, 1)[0] : { free: maxLength, members: [] };
    bin.free -= n;
    bin.members.push(ex);
    let at = 0;
    while (at < bins.length && bins[at].free < bin.free) at++;
    bins.splice(at, 0, bin);
  }
  const rows = bins.map(({ members }) => {
    const ids: number[] = [],
      segments: number[] = [],
      targets: number[] = [];
    members.forEach((ex, k) => {
      ids.push(...ex.inputIds);
      targets.push(...ex.labelMask);
      segments.push(...ex.inputIds.map(() => k + 1));
    });
    return { ids, targets: Uint8Array.from(targets), segments };
  });
  return report(rows, maxLength, truncated, dropped);
}

/**
 * Pre-training: every example's tokens concatenated (each already starts with BOS and ends with EOS
 * where the tokenizer has them) and cut into rows of exactly `maxLength`; the remainder is dropped,
 * as in Hugging Face's run_clm. A row is one segment: documents in it see each other.
 */
export function chunkRows(examples: Example[], maxLength: number): RowsReport {
  const ids: number[] = [];
  for (const e of examples) for (const id of e.inputIds) ids.push(id);
  const rows: TrainingRow[] = [];
  for (let at = 0; at + maxLength <= ids.length; at += maxLength) {
    const chunk = ids.slice(at, at + maxLength);
    rows.push({
      ids: chunk,
      targets: new Uint8Array(maxLength).fill(1),
      segments: new Array<number>(maxLength).fill(1),
    });
  }
  if (!rows.length)
    throw new LlmboxError(`the data holds ${ids.length} tokens, fewer than one row of --max-length ${maxLength}`, {
      field: '--max-length',
      fix: 'lower --max-length or add text',
    });
  return report(rows, maxLength, 0);
}

/** Rows as one rectangular batch, right-padded to its longest row. */
export interface Batch {
  ids: number[][];
  segments: number[][];
  targets: Uint8Array[];
  /** Tokens that are predicted (the loss's denominator). */
  targetCount: number;
}

/** Whether token t + 1 is a target predicted from position t of the same segment. */
export function isTarget(row: { targets: Uint8Array; segments: number[] }, t: number): boolean {
  return row.targets[t + 1] === 1 && row.segments[t + 1] !== 0 && row.segments[t + 1] === row.segments[t];
}

/** A batch's segments in reading order (row by row, left to right): the row, and the flat positions (b * T + t) of its first and last tokens. */
export function segmentsOf(segments: number[][]): { row: number; first: number; last: number }[] {
  const out: { row: number; first: number; last: number }[] = [];
  const T = segments[0]?.length ?? 0;
  segments.forEach((seg, b) => {
    for (let t = 0; t < T; t++) {
      if (seg[t] === 0) continue;
      if (t === 0 || seg[t - 1] !== seg[t]) out.push({ row: b, first: b * T + t, last: b * T + t });
      else out[out.length - 1].last = b * T + t;
    }
  });
  return out;
}

export function toBatch(rows: TrainingRow[], pad = 0): Batch {
  const T = Math.max(...rows.map((r) => r.ids.length));
  const batch: Batch = { ids: [], segments: [], targets: [], targetCount: 0 };
  for (const r of rows) {
    const n = T - r.ids.length;
    batch.ids.push([...r.ids, ...new Array<number>(n).fill(pad)]);
    batch.segments.push([...r.segments, ...new Array<number>(n).fill(0)]);
    const targets = new Uint8Array(T);
    targets.set(r.targets);
    batch.targets.push(targets);
  }
  for (let b = 0; b < rows.length; b++) {
    for (let t = 0; t + 1 < T; t++)
      if (isTarget({ targets: batch.targets[b], segments: batch.segments[b] }, t)) batch.targetCount++;
  }
  return batch;
}
