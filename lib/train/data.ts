import { LlmboxError } from '../errors.js';
import { mix, shuffled, type MixtureOptions } from '../data/mixture.js';
import { datasetInfo, streamRecords } from '../data/read.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { openTokenCache, tokenCacheKey, type TokenStore } from '../data/token-cache.js';
import { tokenizeRecord, type Example, type TokenizeOptions } from '../data/tokenize.js';
import { seededRandom } from '../util/random.js';
import type { TextTokenizer } from '../models/tokenizer.js';
import { chunkRows, packRows, rowArray, unpackedRows, type TrainingRow, type RowSource } from './batches.js';
import { DEFAULTS } from '../util/defaults.js';

export type Stage = 'pt' | 'sft';

export interface DataOptions extends TokenizeOptions {
  datasets: string[];
  /** LLMBox's --dataset_ratio: one share per dataset (mixture by ratio). */
  datasetRatio?: number[];
  mixStrategy?: MixtureOptions['strategy'];
  /** Examples in a ratio mixture (default: the datasets' total). */
  mixTotal?: number;
  /** Where dataset_info.json is looked up for dataset names. */
  dataDir?: string;
  stage: Stage;
  packing?: boolean;
  maxLength: number;
  /** Held out for evaluation loss: a fraction (< 1) or a count of examples. Default 5%, at most 200. */
  valSize?: number;
  /** Tokens of held-out rows the evaluation loss reads (default 32768): long documents make many rows. */
  evalTokens?: number;
  seed?: number;
  /** Keep tokenized sources on disk (LLMBOX_CACHE_DIR, default ~/.cache/llmbox) and reuse them (default true). */
  cache?: boolean;
}

export interface PreparedData {
  train: RowSource;
  val: TrainingRow[];
  sources: { name: string; file: string; examples: number; mixed: number; proportion: number }[];
  utilisation: number;
  truncated: number;
  /** Examples left out because they have no target token (an empty reply, or a prompt that fills --max-length). */
  dropped: number;
  /** Sources whose tokens came from the on-disk cache. */
  cacheHits: number;
  /** Releases files that rows are read from. */
  close(): void;
}

/**
 * Reads the datasets, mixes them, holds out a validation split, tokenizes (the template, assistant-only
 * targets) and lays the examples out in rows: chunks of the concatenated text streamed from disk (pt,
 * preparePretraining), packed rows or one example per row (sft). Deterministic for a seed.
 */
export async function prepareData(tok: TextTokenizer, o: DataOptions): Promise<PreparedData> {
  if (!o.datasets.length)
    throw new LlmboxError('no training data given', {
      field: '--dataset',
      fix: 'pass one or more files (or dataset_info.json names)',
    });
  if (o.stage === 'pt') return preparePretraining(tok, o);
  // Text sources may join an instruction mixture (every token a target); preference pairs need a
  // preference trainer.
  const opened = await openSources(tok, o, !!o.trainOnPrompt);
  let dropped = 0;
  // Instruction data is packed from all its examples at once, so they are read into memory.
  const usable = (() => {
    try {
      return opened.stores.map((st, i) => {
        const kept: Example[] = [];
        for (let k = 0; k < st.count; k++) {
          const e = st.example(k);
          if (e && e.labelMask.some((m) => m === 1)) kept.push(e);
          else if (e) dropped++;
        }
        if (!kept.length)
          throw new LlmboxError(
            'no text or conversation records with something to learn (preference pairs are for DPO)',
            { file: opened.sources[i].file, fix: 'check the file' },
          );
        return kept;
      });
    } finally {
      opened.close();
    }
  })();
  const { mixed, val: valItems, train: trainItems } = mixAndSplit(usable, o);
  const layout = (ex: Example[]) => (o.packing ? packRows(ex, o.maxLength) : unpackedRows(ex, o.maxLength));
  const train = layout(trainItems.map((x) => x.item));
  const val = valItems.length ? layout(valItems.map((x) => x.item)).rows : [];
  return {
    train: rowArray(train.rows),
    close: () => undefined,
    val: budgeted(val, o.evalTokens ?? DEFAULTS.train.evalTokens),
    sources: opened.sources.map((s, i) => ({
      ...s,
      examples: usable[i].length,
      mixed: mixed.counts[i],
      proportion: mixed.proportions[i],
    })),
    utilisation: train.utilisation,
    truncated: train.truncated,
    dropped: dropped + train.dropped,
    cacheHits: opened.cacheHits,
  };
}

/**
 * Each dataset's tokens in the on-disk cache, tokenized on a miss while its records are streamed
 * (JSON Lines and text line by line), so neither stage holds a source's raw text whole.
 */
async function openSources(
  tok: TextTokenizer,
  o: DataOptions,
  trainOnPrompt: boolean,
): Promise<{ stores: TokenStore[]; sources: { name: string; file: string }[]; cacheHits: number; close(): void }> {
  const settings = { template: o.template ?? null, trainOnPrompt };
  const stores: TokenStore[] = [];
  const sources: { name: string; file: string }[] = [];
  let cacheHits = 0;
  const close = () => stores.forEach((s) => s.close());
  try {
    for (const spec of o.datasets) {
      const file = existsSync(spec) ? spec : datasetInfo(join(o.dataDir ?? '.', 'dataset_info.json'), spec).path;
      const key = tokenCacheKey(file, tok.fingerprint, { spec, dataDir: o.dataDir ?? null, ...settings });
      const { store, hit } = await openTokenCache(
        key,
        async function* () {
          for await (const r of streamRecords(spec, { dataDir: o.dataDir }))
            yield r.kind === 'preference' ? null : tokenizeRecord(tok, r, { template: o.template, trainOnPrompt });
        },
        { reuse: o.cache },
      );
      if (hit) cacheHits++;
      stores.push(store);
      sources.push({ name: spec, file });
    }
  } catch (e) {
    close();
    throw e;
  }
  return { stores, sources, cacheHits, close };
}

/** The mixture, shuffled, with the held-out examples first split off. */
function mixAndSplit<T>(usable: T[][], o: DataOptions) {
  const mixed = mix(usable, {
    strategy: o.mixStrategy,
    ratios: o.datasetRatio,
    total: o.mixTotal,
    seed: o.seed ?? DEFAULTS.train.seed,
  });
  const items = shuffled(mixed.items, seededRandom((o.seed ?? DEFAULTS.train.seed) + 1));
  const nVal = valCount(o, items.length);
  return { mixed, val: items.slice(0, nVal), train: items.slice(nVal) };
}

/** Held-out count: a fraction (< 1) or a count; default 5%, at most 200. */
export function valCount(o: Pick<DataOptions, 'valSize'>, n: number): number {
  const v =
    o.valSize === undefined
      ? Math.min(200, Math.floor(n * 0.05))
      : o.valSize < 1
        ? Math.floor(n * o.valSize)
        : Math.floor(o.valSize);
  if (v >= n)
    throw new LlmboxError(`--val-size ${o.valSize} leaves no training examples out of ${n}`, { field: '--val-size' });
  return v;
}

function budgeted(rows: TrainingRow[], budget: number): TrainingRow[] {
  let used = 0;
  return rows.filter((r) => (used += r.ids.length) <= budget || used === r.ids.length);
}

/**
 * Pre-training data as a stream: each source is read record by record (JSON Lines and text line by
 * line), tokenized straight into the on-disk cache, and rows are cut from the mixture's virtual
 * concatenation when the trainer asks for them, reading their tokens from the cache files. Memory
 * holds 4 bytes per document and 16 per mixture item, not the corpus.
 */
async function preparePretraining(tok: TextTokenizer, o: DataOptions): Promise<PreparedData> {
  const { stores, sources, cacheHits, close } = await openSources(tok, o, true);
  // A document of one token (BOS alone) predicts nothing.
  let dropped = 0;
  const usable = stores.map((st, i) => {
    const idx: number[] = [];
    for (let k = 0; k < st.count; k++) {
      if (st.lengths[k] >= 2) idx.push(k);
      else if (st.lengths[k] >= 0) dropped++;
    }
    if (!idx.length) throw new LlmboxError('no text to learn from', { file: sources[i].file, fix: 'check the file' });
    return idx;
  });
  const { mixed, val: valItems, train } = mixAndSplit(usable, o);
  const valEx = valItems.map((x) => stores[x.source].example(x.item)!);
  const val = valEx.length
    ? (valEx.reduce((n, e) => n + e.inputIds.length, 0) < o.maxLength
        ? unpackedRows(valEx, o.maxLength)
        : chunkRows(valEx, o.maxLength)
      ).rows
    : [];
  const prefix = new Float64Array(train.length + 1);
  train.forEach((x, k) => (prefix[k + 1] = prefix[k] + stores[x.source].lengths[x.item]));
  const T = o.maxLength;
  const nRows = Math.floor(prefix[train.length] / T);
  if (!nRows)
    throw new LlmboxError(`the data holds ${prefix[train.length]} tokens, fewer than one row of --max-length ${T}`, {
      field: '--max-length',
      fix: 'lower --max-length or add text',
    });
  const rows: RowSource = {
    length: nRows,
    get(r: number): TrainingRow {
      const ids: number[] = [];
      let at = r * T;
      // The item holding token `at`: the last k with prefix[k] <= at.
      let lo = 0,
        hi = train.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (prefix[mid] <= at) lo = mid;
        else hi = mid - 1;
      }
      for (let k = lo; ids.length < T; k++) {
        const x = train[k],
          off = at - prefix[k];
        const take = Math.min(T - ids.length, stores[x.source].lengths[x.item] - off);
        for (const id of stores[x.source].ids(x.item, off, take)) ids.push(id);
        at += take;
      }
      return { ids, targets: new Uint8Array(T).fill(1), segments: new Array<number>(T).fill(1) };
    },
  };
  return {
    train: rows,
    val: budgeted(val, o.evalTokens ?? DEFAULTS.train.evalTokens),
    sources: sources.map((s, i) => ({
      ...s,
      examples: usable[i].length,
      mixed: mixed.counts[i],
      proportion: mixed.proportions[i],
    })),
    utilisation: 1,
    truncated: 0,
    dropped,
    cacheHits,
    close,
  };
}
