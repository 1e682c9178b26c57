import { LlmboxError } from '../errors.js';
import { mix, shuffled, type MixtureOptions } from '../data/mixture.js';
import { readRecords } from '../data/read.js';
import { cachedExamples, tokenCacheKey } from '../data/token-cache.js';
import { tokenizeRecord, type Example, type TokenizeOptions } from '../data/tokenize.js';
import { seededRandom } from '../models/sampling.js';
import type { TextTokenizer } from '../models/tokenizer.js';
import { chunkRows, packRows, unpackedRows, type Row } from './batches.js';

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
  train: Row[];
  val: Row[];
  sources: { name: string; file: string; examples: number; mixed: number; proportion: number }[];
  utilisation: number;
  truncated: number;
  /** Examples left out because they have no target token (an empty reply, or a prompt that fills --max-length). */
  dropped: number;
  /** Sources whose tokens came from the on-disk cache. */
  cacheHits: number;
}

function rowsFor(examples: Example[], o: DataOptions) {
  if (o.stage === 'pt') return chunkRows(examples, o.maxLength);
  return o.packing ? packRows(examples, o.maxLength) : unpackedRows(examples, o.maxLength);
}

/**
 * Reads the datasets, mixes them, holds out a validation split, tokenizes (the template, assistant-only
 * targets) and lays the examples out in rows: chunks of the concatenated text (pt), packed rows or one
 * example per row (sft). Deterministic for a seed.
 */
export async function prepareData(tok: TextTokenizer, o: DataOptions): Promise<PreparedData> {
  if (!o.datasets.length) throw new LlmboxError('no training data given', { field: '--dataset', fix: 'pass one or more files (or dataset_info.json names)' });
  const read = await Promise.all(o.datasets.map((d) => readRecords(d, { dataDir: o.dataDir })));
  // pt learns every token (a conversation is read as its rendered text). Text sources may join an
  // instruction mixture the same way; preference pairs need a preference trainer.
  const settings = { template: o.template ?? null, trainOnPrompt: !!o.trainOnPrompt || o.stage === 'pt' };
  let dropped = 0, cacheHits = 0;
  const usable = read.map((r, i) => {
    const key = tokenCacheKey(r.file, tok.fingerprint, { spec: o.datasets[i], dataDir: o.dataDir ?? null, ...settings });
    const { examples, hit } = cachedExamples(key, () => r.records.map((x) => (x.kind === 'preference' ? null : tokenizeRecord(tok, x, { template: o.template, trainOnPrompt: settings.trainOnPrompt }))), { enabled: o.cache });
    if (hit) cacheHits++;
    const kept = examples.filter((e): e is Example => e !== null && e.labelMask.some((m) => m === 1));
    dropped += examples.filter((e) => e !== null).length - kept.length;
    if (!kept.length) throw new LlmboxError('no text or conversation records with something to learn (preference pairs are for DPO)', { file: r.file, fix: 'check the file' });
    return kept;
  });
  const mixed = mix(usable, { strategy: o.mixStrategy ?? (o.datasetRatio ? 'ratio' : 'concat'), ratios: o.datasetRatio, total: o.mixTotal, seed: o.seed ?? 42 });
  const items = shuffled(mixed.items, seededRandom((o.seed ?? 42) + 1));
  const nVal = o.valSize === undefined ? Math.min(200, Math.floor(items.length * 0.05)) : o.valSize < 1 ? Math.floor(items.length * o.valSize) : Math.floor(o.valSize);
  if (nVal >= items.length) throw new LlmboxError(`--val-size ${o.valSize} leaves no training examples out of ${items.length}`, { field: '--val-size' });
  const valEx = items.slice(0, nVal).map((x) => x.item);
  const trainEx = items.slice(nVal).map((x) => x.item);
  const train = rowsFor(trainEx, o);
  const val = valEx.length ? rowsFor(valEx, { ...o, stage: o.stage === 'pt' && valEx.reduce((n, e) => n + e.inputIds.length, 0) < o.maxLength ? 'sft' : o.stage }) : { rows: [] };
  const budget = o.evalTokens ?? 32768;
  let used = 0;
  const valRows = val.rows.filter((r) => (used += r.ids.length) <= budget || used === r.ids.length);
  return {
    train: train.rows,
    val: valRows,
    sources: read.map((r, i) => ({ name: r.name, file: r.file, examples: usable[i].length, mixed: mixed.counts[i], proportion: mixed.proportions[i] })),
    utilisation: train.utilisation,
    truncated: train.truncated,
    dropped: dropped + train.dropped,
    cacheHits,
  };
}
