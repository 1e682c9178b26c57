import { readFileSync } from 'node:fs';
import { LlmboxError } from '../errors.js';
import {
  classifierLabels,
  hfArchitectures,
  num,
  optionalPositive,
  parseRopeScaling,
  positiveInt,
  ropeScalingJson,
  specialIds,
  specialIdsJson,
  type Json,
} from './config-fields.js';
import { gpt2Config, gpt2HfConfig, gptNeoxConfig, gptNeoxHfConfig } from './config-gpt.js';

export type Architecture = 'llama' | 'mistral' | 'qwen2' | 'qwen3' | 'phi3' | 'gemma' | 'gemma2' | 'gpt_neox' | 'gpt2';

export type RopeScaling =
  | { type: 'linear'; factor: number }
  | {
      type: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    };

/** The decoder hyper-parameters llmbox needs, normalised from a Hugging Face config.json. */
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
  /** The norms' epsilon (RMSNorm's, or LayerNorm's). */
  normEps: number;
  /** RMSNorm, or LayerNorm with a bias (GPT-NeoX, GPT-2). */
  normType: 'rms' | 'layer';
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  tieWordEmbeddings: boolean;
  /** Bias on q, k and v projections (Qwen2 always, LLaMA when attention_bias is set). */
  attentionBias: boolean;
  /** Bias on o_proj (LLaMA's attention_bias covers it; Qwen2's biases stop at v). */
  outputBias: boolean;
  /** Biases on the feed-forward projections (LLaMA's mlp_bias; GPT-NeoX and GPT-2 always). */
  mlpBias: boolean;
  /** act(gate) * up (SwiGLU, GeGLU), or act(up) alone (GPT-NeoX's and GPT-2's plain MLP). */
  gatedMlp: boolean;
  /** How positions enter: rotary embeddings on each head, or GPT-2's learned table added to the token embeddings. */
  positions: 'rope' | 'learned';
  /** Leading dimensions of each head that RoPE rotates: head_dim, or GPT-NeoX's rotary_pct of it. */
  rotaryDim: number;
  /** Attention and feed-forward both read the layer's input: x + attn(ln1 x) + mlp(ln2 x) (GPT-NeoX). */
  parallelResidual: boolean;
  /** RMSNorm over each head's queries and keys before RoPE (Qwen3's q_norm / k_norm). */
  qkNorm: boolean;
  /** Feed-forward activation: SwiGLU's silu, the tanh-approximated gelu (Gemma, GPT-2), or exact erf gelu (GPT-NeoX). */
  activation: 'silu' | 'gelu_tanh' | 'gelu';
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
  gpt_neox: 'gpt_neox',
  gpt2: 'gpt2',
};

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
  if (architecture === 'gpt_neox') return gptNeoxConfig(raw, file);
  if (architecture === 'gpt2') return gpt2Config(raw, file);
  return llamaFamilyConfig(raw, architecture, file);
}

/** LLaMA and its relatives: RMSNorm, full rotary heads, gated feed-forward, sequential residuals. */
function llamaFamilyConfig(raw: Json, architecture: Architecture, file: string): ModelConfig {
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
      fix: `llmbox rotates whole heads (a factor of 1) for ${architecture}; partial rotary is GPT-NeoX's (model_type gpt_neox)`,
    });
  }
  // A window that is used must be a positive size; null means none.
  const slidingWindow =
    useSliding && raw.sliding_window !== null && raw.sliding_window !== undefined
      ? positiveInt(raw, 'sliding_window', file)
      : null;
  const vocabSize = positiveInt(raw, 'vocab_size', file);
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
    normEps: num(raw, 'rms_norm_eps', file, 1e-6),
    normType: 'rms',
    ropeTheta: num(raw, 'rope_theta', file, 10000),
    ropeScaling: parseRopeScaling(raw.rope_scaling, file),
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    attentionBias: architecture === 'qwen2' ? true : raw.attention_bias === true,
    outputBias: architecture !== 'qwen2' && raw.attention_bias === true,
    mlpBias: architecture === 'llama' && raw.mlp_bias === true,
    gatedMlp: true,
    positions: 'rope',
    rotaryDim: headDim,
    parallelResidual: false,
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
    ...specialIds(raw, file, vocabSize),
    numLabels: classifierLabels(raw, file),
  };
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
  if (cfg.architecture === 'gpt_neox') return gptNeoxHfConfig(cfg);
  if (cfg.architecture === 'gpt2') return gpt2HfConfig(cfg);
  const archName = {
    llama: 'LlamaForCausalLM',
    mistral: 'MistralForCausalLM',
    qwen2: 'Qwen2ForCausalLM',
    qwen3: 'Qwen3ForCausalLM',
    phi3: 'Phi3ForCausalLM',
    gemma: 'GemmaForCausalLM',
    gemma2: 'Gemma2ForCausalLM',
  }[cfg.architecture as Exclude<Architecture, 'gpt_neox' | 'gpt2'>];
  return {
    ...hfArchitectures(cfg.numLabels, archName, archName.replace('ForCausalLM', 'ForSequenceClassification')),
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
    rms_norm_eps: cfg.normEps,
    rope_theta: cfg.ropeTheta,
    rope_scaling: ropeScalingJson(cfg.ropeScaling),
    ...(cfg.architecture === 'gemma2'
      ? {
          query_pre_attn_scalar: cfg.queryPreAttnScalar,
          attn_logit_softcapping: cfg.attnSoftcap,
          final_logit_softcapping: cfg.finalSoftcap,
        }
      : {}),
    tie_word_embeddings: cfg.tieWordEmbeddings,
    attention_bias: cfg.attentionBias,
    ...(cfg.mlpBias ? { mlp_bias: true } : {}),
    sliding_window: cfg.slidingWindow,
    use_sliding_window: cfg.slidingWindow !== null,
    ...specialIdsJson(cfg),
    torch_dtype: 'float32',
  };
}
