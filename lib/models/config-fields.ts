import { LlmboxError } from '../errors.js';
import type { ModelConfig, RopeScaling } from './config.js';

/** Field readers shared by every architecture's config parser: each names the file and field it refuses. */

export type Json = Record<string, unknown>;

export function num(cfg: Json, key: string, file: string, fallback?: number): number {
  const v = cfg[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new LlmboxError(`missing required field ${key}`, {
      file,
      field: key,
      fix: `add "${key}" (a number) to config.json`,
    });
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new LlmboxError(`field ${key} must be a number, got ${JSON.stringify(v)}`, { file, field: key });
  }
  return v;
}

export function positiveInt(cfg: Json, key: string, file: string, fallback?: number): number {
  const v = num(cfg, key, file, fallback);
  if (!Number.isInteger(v) || v <= 0) {
    throw new LlmboxError(`field ${key} must be a positive integer, got ${v}`, { file, field: key });
  }
  return v;
}

/** A special token id (or list of them) inside the vocabulary; absent is allowed, a wrong type or range is not. */
export function tokenIds(raw: Json, key: string, file: string, vocab: number): number[] {
  const v = raw[key];
  if (v === undefined || v === null) return [];
  const list = Array.isArray(v) ? v : [v];
  for (const x of list) {
    if (!Number.isInteger(x) || (x as number) < 0 || (x as number) >= vocab) {
      throw new LlmboxError(`${key} ${JSON.stringify(v)} is not a token id in [0, ${vocab})`, {
        file,
        field: key,
        fix: `give ${key} as an integer below vocab_size (or a list of them)`,
      });
    }
  }
  return list as number[];
}

export function parseRopeScaling(v: unknown, file: string): RopeScaling | null {
  if (v === undefined || v === null) return null;
  const r = v as Json;
  const type = (r.rope_type ?? r.type) as string | undefined;
  const field = 'rope_scaling';
  if (type === 'default') return null;
  if (type === 'linear') return { type: 'linear', factor: num(r, 'factor', file) };
  if (type === 'llama3') {
    return {
      type: 'llama3',
      factor: num(r, 'factor', file),
      lowFreqFactor: num(r, 'low_freq_factor', file),
      highFreqFactor: num(r, 'high_freq_factor', file),
      originalMaxPositionEmbeddings: num(r, 'original_max_position_embeddings', file),
    };
  }
  throw new LlmboxError(`unsupported rope_scaling type ${JSON.stringify(type)}`, {
    file,
    field,
    fix: 'llmbox supports rope_scaling types "linear" and "llama3"',
  });
}

/** A positive number, or null when the field is absent or null (an optional feature switched off). */
export function optionalPositive(raw: Json, key: string, file: string): number | null {
  if (raw[key] === undefined || raw[key] === null) return null;
  const v = num(raw, key, file);
  if (v <= 0) throw new LlmboxError(`${key} must be positive, got ${v}`, { file, field: key });
  return v;
}

/** 1 for a reward model (a sequence classifier with one output), 0 for a causal LM; other classifiers are refused. */
export function classifierLabels(raw: Json, file: string): number {
  const archs = Array.isArray(raw.architectures) ? raw.architectures : [];
  if (!archs.some((a: unknown) => typeof a === 'string' && a.endsWith('ForSequenceClassification'))) return 0;
  // transformers' default is 2 labels when the config names none.
  const n = typeof raw.num_labels === 'number' ? raw.num_labels : raw.id2label ? Object.keys(raw.id2label).length : 2;
  if (n !== 1)
    throw new LlmboxError(`a sequence classifier with ${n} labels: llmbox reads reward models (one output)`, {
      file,
      field: 'num_labels',
      fix: 'use a reward model (num_labels 1), or a causal LM',
    });
  return 1;
}

/** config.json's `architectures`: the causal LM's class, or its sequence-classifier sibling for a reward model. */
export function hfArchitectures(numLabels: number, causal: string, classifier: string): { architectures: string[] } {
  return { architectures: [numLabels ? classifier : causal] };
}

/** rope_scaling as config.json writes it. */
export function ropeScalingJson(rs: RopeScaling | null): Json | null {
  if (!rs) return null;
  if (rs.type === 'linear') return { rope_type: 'linear', factor: rs.factor };
  return {
    rope_type: 'llama3',
    factor: rs.factor,
    low_freq_factor: rs.lowFreqFactor,
    high_freq_factor: rs.highFreqFactor,
    original_max_position_embeddings: rs.originalMaxPositionEmbeddings,
  };
}

/** bos_token_id (one id at most) and eos_token_id (one or a list), each inside the vocabulary. */
export function specialIds(raw: Json, file: string, vocab: number): Pick<ModelConfig, 'bosTokenId' | 'eosTokenIds'> {
  const [bos, ...more] = tokenIds(raw, 'bos_token_id', file, vocab);
  if (more.length) throw new LlmboxError('bos_token_id must be one id', { file, field: 'bos_token_id' });
  return { bosTokenId: bos ?? null, eosTokenIds: tokenIds(raw, 'eos_token_id', file, vocab) };
}

/** The special ids as config.json writes them. */
export function specialIdsJson(cfg: ModelConfig): Json {
  return {
    bos_token_id: cfg.bosTokenId,
    eos_token_id: cfg.eosTokenIds.length === 1 ? cfg.eosTokenIds[0] : cfg.eosTokenIds,
  };
}
