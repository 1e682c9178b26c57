import { readFileSync } from 'node:fs';
import { LlmboxError } from '../errors.js';

export type Architecture = 'llama' | 'mistral' | 'qwen2' | 'qwen3' | 'phi3' | 'gemma' | 'gemma2';

export type RopeScaling =
  | { type: 'linear'; factor: number }
  | {
      type: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    };

/** The LLaMA-family hyper-parameters llmbox needs, normalised from a Hugging Face config.json. */
export interface ModelConfig {
  architecture: Architecture;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  maxPositionEmbeddings: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  tieWordEmbeddings: boolean;
  /** Bias on q, k and v projections (Qwen2 always, LLaMA when attention_bias is set). */
  attentionBias: boolean;
  /** RMSNorm over each head's queries and keys before RoPE (Qwen3's q_norm / k_norm). */
  qkNorm: boolean;
  /** Feed-forward gate activation: SwiGLU's silu, or Gemma's tanh-approximated gelu (GeGLU). */
  activation: 'silu' | 'gelu_tanh';
  /** Norm weights stored as an offset from 1 (Gemma: x * (1 + w)). */
  normWeightOffset: boolean;
  /** Embeddings multiplied by sqrt(hidden_size) (Gemma). */
  embedScale: boolean;
  /** Queries are multiplied by its inverse square root: head_dim, or Gemma 2's query_pre_attn_scalar. */
  queryPreAttnScalar: number;
  /** Attention scores capped as cap * tanh(s / cap) (Gemma 2's attn_logit_softcapping). */
  attnSoftcap: number | null;
  /** Logits capped likewise (Gemma 2's final_logit_softcapping). */
  finalSoftcap: number | null;
  /** Which layers use slidingWindow: all of them, or Gemma 2's even ones (odd layers see everything). */
  slidingLayers: 'all' | 'even';
  /** Norms on the sub-layer outputs too (Gemma 2: post-attention, pre- and post-feed-forward). */
  sandwichNorms: boolean;
  /** Mistral's sliding-window attention span, null for full attention. */
  slidingWindow: number | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /**
   * A sequence classifier's outputs (`*ForSequenceClassification`, `score.weight`): 1 for a reward
   * model; 0 for a causal LM.
   */
  numLabels: number;
}

const MODEL_TYPES: Record<string, Architecture> = {
  llama: 'llama',
  mistral: 'mistral',
  qwen2: 'qwen2',
  qwen3: 'qwen3',
  phi3: 'phi3',
  gemma: 'gemma',
  gemma2: 'gemma2',
};

type Json = Record<string, unknown>;

function num(cfg: Json, key: string, file: string, fallback?: number): number {
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

function positiveInt(cfg: Json, key: string, file: string, fallback?: number): number {
  const v = num(cfg, key, file, fallback);
  if (!Number.isInteger(v) || v <= 0) {
    throw new LlmboxError(`field ${key} must be a positive integer, got ${v}`, { file, field: key });
  }
  return v;
}

/** A special token id (or list of them) inside the vocabulary; absent is allowed, a wrong type or range is not. */
function tokenIds(raw: Json, key: string, file: string, vocab: number): number[] {
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

function parseRopeScaling(v: unknown, file: string): RopeScaling | null {
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
function optionalPositive(raw: Json, key: string, file: string): number | null {
  if (raw[key] === undefined || raw[key] === null) return null;
  const v = num(raw, key, file);
  if (v <= 0) throw new LlmboxError(`${key} must be positive, got ${v}`, { file, field: key });
  return v;
}

/** hidden_act (hidden_activation in Gemma): silu, or the tanh-approximated gelu Gemma uses whatever it says. */
function activationOf(raw: Json, architecture: Architecture, file: string): ModelConfig['activation'] {
  // transformers runs Gemma with gelu_pytorch_tanh even where an old config says "gelu".
  if (architecture === 'gemma' || architecture === 'gemma2') return 'gelu_tanh';
  const act = raw.hidden_act ?? 'silu';
  if (act !== 'silu' && act !== 'swish') {
    throw new LlmboxError(`hidden_act ${JSON.stringify(act)} is not supported for ${architecture}`, {
      file,
      field: 'hidden_act',
      fix: 'llmbox runs silu (SwiGLU) LLaMA-family models, and Gemma',
    });
  }
  return 'silu';
}

export function parseConfig(raw: Json, file = 'config.json'): ModelConfig {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new LlmboxError(
      `config.json must be a JSON object, got ${raw === null ? 'null' : Array.isArray(raw) ? 'an array' : typeof raw}`,
      { file, fix: 'use the config.json that came with the weights' },
    );
  }
  const modelType = raw.model_type;
  const architecture = typeof modelType === 'string' ? MODEL_TYPES[modelType] : undefined;
  if (!architecture) {
    throw new LlmboxError(`unknown architecture model_type=${JSON.stringify(modelType)}`, {
      file,
      field: 'model_type',
      fix: `llmbox supports ${Object.keys(MODEL_TYPES).join(', ')}`,
    });
  }
  const hiddenSize = positiveInt(raw, 'hidden_size', file);
  const numHeads = positiveInt(raw, 'num_attention_heads', file);
  const numKvHeads = positiveInt(raw, 'num_key_value_heads', file, numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new LlmboxError(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`, {
      file,
      field: 'num_key_value_heads',
    });
  }
  const headDim = positiveInt(raw, 'head_dim', file, hiddenSize / numHeads);
  if (headDim % 2 !== 0)
    throw new LlmboxError(`head_dim ${headDim} must be even for RoPE`, { file, field: 'head_dim' });
  const gemma = architecture === 'gemma' || architecture === 'gemma2';
  const useSliding =
    architecture === 'mistral' ||
    architecture === 'gemma2' ||
    architecture === 'phi3' ||
    (architecture.startsWith('qwen') && raw.use_sliding_window === true);
  const partial = raw.partial_rotary_factor;
  if (partial !== undefined && partial !== null && partial !== 1) {
    throw new LlmboxError(`partial_rotary_factor ${JSON.stringify(partial)} is not supported`, {
      file,
      field: 'partial_rotary_factor',
      fix: 'llmbox rotates whole heads (a factor of 1)',
    });
  }
  // A window that is used must be a positive size; null means none.
  const slidingWindow =
    useSliding && raw.sliding_window !== null && raw.sliding_window !== undefined
      ? positiveInt(raw, 'sliding_window', file)
      : null;
  const vocabSize = positiveInt(raw, 'vocab_size', file);
  const [bos, ...moreBos] = tokenIds(raw, 'bos_token_id', file, vocabSize);
  if (moreBos.length) throw new LlmboxError('bos_token_id must be one id', { file, field: 'bos_token_id' });
  return {
    architecture,
    vocabSize,
    hiddenSize,
    intermediateSize: positiveInt(raw, 'intermediate_size', file),
    numLayers: positiveInt(raw, 'num_hidden_layers', file),
    numHeads,
    numKvHeads,
    headDim,
    maxPositionEmbeddings: positiveInt(raw, 'max_position_embeddings', file, 2048),
    rmsNormEps: num(raw, 'rms_norm_eps', file, 1e-6),
    ropeTheta: num(raw, 'rope_theta', file, 10000),
    ropeScaling: parseRopeScaling(raw.rope_scaling, file),
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    attentionBias: architecture === 'qwen2' ? true : raw.attention_bias === true,
    qkNorm: architecture === 'qwen3',
    activation: activationOf(raw, architecture, file),
    normWeightOffset: gemma,
    embedScale: gemma,
    queryPreAttnScalar: architecture === 'gemma2' ? num(raw, 'query_pre_attn_scalar', file, headDim) : headDim,
    attnSoftcap: architecture === 'gemma2' ? optionalPositive(raw, 'attn_logit_softcapping', file) : null,
    finalSoftcap: architecture === 'gemma2' ? optionalPositive(raw, 'final_logit_softcapping', file) : null,
    slidingLayers: architecture === 'gemma2' ? 'even' : 'all',
    sandwichNorms: architecture === 'gemma2',
    slidingWindow,
    bosTokenId: bos ?? null,
    eosTokenIds: tokenIds(raw, 'eos_token_id', file, vocabSize),
    numLabels: classifierLabels(raw, file),
  };
}

/** 1 for a reward model (a sequence classifier with one output), 0 for a causal LM; other classifiers are refused. */
function classifierLabels(raw: Json, file: string): number {
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

export function readConfig(dir: string): ModelConfig {
  const file = `${dir}/config.json`;
  let raw: Json;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const missing = code === 'ENOENT';
    throw new LlmboxError(
      missing
        ? 'model config not found'
        : code === 'EISDIR'
          ? 'config.json is a directory, not a file'
          : `config.json is not valid JSON: ${(e as Error).message}`,
      {
        file,
        fix: missing
          ? 'point -m at a folder in Hugging Face layout (config.json, model.safetensors, tokenizer.json)'
          : undefined,
      },
    );
  }
  return parseConfig(raw, file);
}

/** The config.json that describes `cfg`, in Hugging Face's field names. */
export function toHfConfig(cfg: ModelConfig): Json {
  const archName = {
    llama: 'LlamaForCausalLM',
    mistral: 'MistralForCausalLM',
    qwen2: 'Qwen2ForCausalLM',
    qwen3: 'Qwen3ForCausalLM',
    phi3: 'Phi3ForCausalLM',
    gemma: 'GemmaForCausalLM',
    gemma2: 'Gemma2ForCausalLM',
  }[cfg.architecture];
  const rs = cfg.ropeScaling;
  return {
    architectures: [cfg.numLabels ? archName.replace('ForCausalLM', 'ForSequenceClassification') : archName],
    ...(cfg.numLabels ? { num_labels: cfg.numLabels } : {}),
    model_type: cfg.architecture,
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.hiddenSize,
    intermediate_size: cfg.intermediateSize,
    num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads,
    num_key_value_heads: cfg.numKvHeads,
    head_dim: cfg.headDim,
    hidden_act: cfg.activation === 'gelu_tanh' ? 'gelu_pytorch_tanh' : 'silu',
    max_position_embeddings: cfg.maxPositionEmbeddings,
    rms_norm_eps: cfg.rmsNormEps,
    rope_theta: cfg.ropeTheta,
    rope_scaling: !rs
      ? null
      : rs.type === 'linear'
        ? { rope_type: 'linear', factor: rs.factor }
        : {
            rope_type: 'llama3',
            factor: rs.factor,
            low_freq_factor: rs.lowFreqFactor,
            high_freq_factor: rs.highFreqFactor,
            original_max_position_embeddings: rs.originalMaxPositionEmbeddings,
          },
    ...(cfg.architecture === 'gemma2'
      ? {
          query_pre_attn_scalar: cfg.queryPreAttnScalar,
          attn_logit_softcapping: cfg.attnSoftcap,
          final_logit_softcapping: cfg.finalSoftcap,
        }
      : {}),
    tie_word_embeddings: cfg.tieWordEmbeddings,
    attention_bias: cfg.attentionBias,
    sliding_window: cfg.slidingWindow,
    use_sliding_window: cfg.slidingWindow !== null,
    bos_token_id: cfg.bosTokenId,
    eos_token_id: cfg.eosTokenIds.length === 1 ? cfg.eosTokenIds[0] : cfg.eosTokenIds,
    torch_dtype: 'float32',
  };
}
