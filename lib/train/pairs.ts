import { LlmboxError } from '../errors.js';
import { readRecords } from '../data/read.js';
import type { TrainingRecord } from '../data/records.js';
import { tokenizeRecord, type Example } from '../data/tokenize.js';
import { shuffled } from '../data/mixture.js';
import type { LoadedModel } from '../models/load.js';
import { seededRandom } from '../util/random.js';
import { toBatch, type Batch, type TrainingRow } from './batches.js';
import { valCount } from './data.js';
import type { TrainOptions } from './trainer.js';

/** A preference pair as two training rows whose targets are the response tokens. */
export interface PairRows {
  chosen: TrainingRow;
  rejected: TrainingRow;
}

/** The preference records of the datasets (prompt/chosen/rejected, HH-RLHF transcripts split at their shared prompt). */
export async function preferenceRecords(o: Pick<TrainOptions, 'datasets' | 'dataDir'>) {
  const out: Extract<TrainingRecord, { kind: 'preference' }>[] = [];
  for (const spec of o.datasets) {
    const { records, file } = await readRecords(spec, { dataDir: o.dataDir });
    const pairs = records.filter((r): r is Extract<TrainingRecord, { kind: 'preference' }> => r.kind === 'preference');
    if (!pairs.length)
      throw new LlmboxError('no preference pairs (prompt/chosen/rejected) in this dataset', {
        file,
        field: '--dataset',
        fix: 'DPO trains on rows with chosen and rejected responses (and a prompt, or HH-RLHF transcripts)',
      });
    out.push(...pairs);
  }
  return out;
}

/**
 * One side of a pair as a row: the conversation rendered by the chat template, only the final reply's
 * tokens as targets (the prompt's earlier assistant turns are context, not what the pair compares).
 * A row longer than maxLength keeps BOS, the prompt's end and the reply (the reply's beginning, with
 * at least half the row for the prompt's end, when the reply alone is too long).
 */
export function replyRow(ex: Example, maxLength: number, bos?: number): TrainingRow | undefined {
  const mask = ex.labelMask;
  let end = mask.length - 1;
  while (end >= 0 && mask[end] !== 1) end--;
  if (end < 1) return undefined;
  let start = end;
  while (start > 0 && mask[start - 1] === 1) start--;
  const ids = ex.inputIds;
  const head = bos !== undefined && ids[0] === bos ? [bos] : [];
  const prompt = ids.slice(head.length, start),
    reply = ids.slice(start);
  const room = maxLength - head.length;
  const replyKept = Math.min(reply.length, Math.max(room - prompt.length, Math.ceil(room / 2)));
  const promptKept = Math.min(prompt.length, room - replyKept);
  const rowIds = [...head, ...prompt.slice(prompt.length - promptKept), ...reply.slice(0, replyKept)];
  if (replyKept < 1 || rowIds.length < 2) return undefined;
  const targets = new Uint8Array(rowIds.length);
  targets.fill(1, rowIds.length - replyKept);
  return { ids: rowIds, targets, segments: rowIds.map(() => 1) };
}

/**
 * Each pair as two rows (replyRow); pairs that lose their reply, or whose two rows come out the
 * same, are dropped and counted.
 */
export function pairRows(
  loaded: LoadedModel,
  records: Extract<TrainingRecord, { kind: 'preference' }>[],
  maxLength: number,
  template?: TrainOptions['template'],
): { pairs: PairRows[]; dropped: number } {
  const tok = loaded.tokenizer!;
  const side = (r: (typeof records)[number], reply: string) =>
    replyRow(
      tokenizeRecord(
        tok,
        { kind: 'chat', messages: [...r.prompt, { role: 'assistant', content: reply }] },
        { template },
      ),
      maxLength,
      tok.bosTokenId,
    );
  const pairs: PairRows[] = [];
  let dropped = 0;
  for (const r of records) {
    const chosen = side(r, r.chosen),
      rejected = side(r, r.rejected);
    if (chosen && rejected && chosen.ids.join() !== rejected.ids.join()) pairs.push({ chosen, rejected });
    else dropped++;
  }
  return { pairs, dropped };
}

/** The datasets' pairs as rows, shuffled by the seed, split into training and held-out pairs (--val-size). */
export async function splitPairs(
  loaded: LoadedModel,
  o: Pick<TrainOptions, 'datasets' | 'dataDir' | 'template' | 'valSize'>,
  maxLength: number,
  seed: number,
): Promise<{ train: PairRows[]; val: PairRows[]; dropped: number }> {
  const records = shuffled(await preferenceRecords(o), seededRandom(seed + 1));
  const { pairs, dropped } = pairRows(loaded, records, maxLength, o.template);
  const nVal = valCount(o, pairs.length);
  return { val: pairs.slice(0, nVal), train: pairs.slice(nVal), dropped };
}

/** The i-th training pair in epoch order: each epoch a seeded shuffle, so any step's pairs are known (resume). */
export function pairOrder(n: number, seed: number): (i: number) => number {
  const epochs = new Map<number, number[]>();
  return (i) => {
    const e = Math.floor(i / n);
    if (!epochs.has(e)) {
      epochs.clear();
      epochs.set(
        e,
        shuffled(
          Array.from({ length: n }, (_, k) => k),
          seededRandom(seed * 1000 + e),
        ),
      );
    }
    return epochs.get(e)![i % n];
  };
}

/**
 * A batch of pairs and where each side's segment sits in reading order (segmentsOf). Unpacked: the
 * chosen rows, then the rejected rows, right-padded. Packed into rows of `packTo` tokens: each pair's
 * two sides as adjacent segments of one row where they fit together (first fit, in order), else each
 * side in a row of its own, the two rows adjacent; segments keep attention and positions apart.
 */
export function pairBatch(
  part: PairRows[],
  pad: number,
  packTo?: number,
): { batch: Batch; chosen: number[]; rejected: number[] } {
  if (!packTo) {
    const n = part.length;
    return {
      batch: toBatch([...part.map((p) => p.chosen), ...part.map((p) => p.rejected)], pad),
      chosen: part.map((_, i) => i),
      rejected: part.map((_, i) => n + i),
    };
  }
  const bins: { free: number; members: { pair: number; side: 'chosen' | 'rejected' }[] }[] = [];
  const place = (need: number, members: { pair: number; side: 'chosen' | 'rejected' }[], fresh: boolean) => {
    const bin = fresh ? undefined : bins.find((b) => b.free >= need);
    if (bin) {
      bin.free -= need;
      bin.members.push(...members);
    } else bins.push({ free: packTo - need, members });
  };
  part.forEach((p, i) => {
    const [c, r] = [p.chosen.ids.length, p.rejected.ids.length];
    if (c + r <= packTo)
      place(
        c + r,
        [
          { pair: i, side: 'chosen' },
          { pair: i, side: 'rejected' },
        ],
        false,
      );
    else {
      place(c, [{ pair: i, side: 'chosen' }], true);
      place(r, [{ pair: i, side: 'rejected' }], true);
    }
  });
  const chosen = new Array<number>(part.length),
    rejected = new Array<number>(part.length);
  let at = 0;
  const rows = bins.map(({ members }) => {
    const ids: number[] = [],
      targets: number[] = [],
      segments: number[] = [];
    members.forEach(({ pair, side }, k) => {
      const row = part[pair][side];
      ids.push(...row.ids);
      targets.push(...row.targets);
      segments.push(...row.ids.map(() => k + 1));
      (side === 'chosen' ? chosen : rejected)[pair] = at++;
    });
    return { ids, targets: Uint8Array.from(targets), segments };
  });
  return { batch: toBatch(rows, pad), chosen, rejected };
}

/** The tokens a batch of pairs holds (both sides; the same packed or not). */
export const pairTokens = (part: PairRows[]) =>
  part.reduce((n, p) => n + p.chosen.ids.length + p.rejected.ids.length, 0);
