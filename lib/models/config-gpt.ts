import { LlmboxError } from '../errors.js';
import type { ModelConfig } from './config.js';
import {
  classifierLabels,
  hfArchitectures,
  num,
  parseRopeScaling,
  positiveInt,
  ropeScalingJson,
  specialIds,
  specialIdsJson,
  type Json,
} from './config-fields.js';

/**
 * GPT-NeoX (Pythia) and GPT-2: LayerNorm with biases, a plain act(up) feed-forward, biases on every
 * projection and full multi-head attention. Their config.json fields are read under their own names.
 */

/** The fields these families share with no LLaMA-family feature switched on. */
function gptDefaults(): Pick<
  ModelConfig,
  | 'numLabels'
  | 'normType'
  | 'gatedMlp'
  | 'attentionBias'
  | 'outputBias'
  | 'mlpBias'
  | 'qkNorm'
  | 'normWeightOffset'
  | 'embedScale'
  | 'attnSoftcap'
  | 'finalSoftcap'
  | 'slidingLayers'
  | 'sandwichNorms'
  | 'slidingWindow'
> {
  return {
    numLabels: 0,
    normType: 'layer',
    gatedMlp: false,
    attentionBias: true,
    outputBias: true,
    mlpBias: true,
    qkNorm: false,
    normWeightOffset: false,
    embedScale: false,
    attnSoftcap: null,
    finalSoftcap: null,
    slidingLayers: 'all',
    sandwichNorms: false,
    slidingWindow: null,
  };
}

/** transformers' ACT2FN names these families use: exact gelu, or one of its tanh approximations. */
function gelu(raw: Json, key: string, fallback: string, file: string): 'gelu' | 'gelu_tanh' {
  const act = raw[key] ?? fallback;
  if (act === 'gelu') return 'gelu';
  // gelu_fast is the same tanh formula written another way.
  if (act === 'gelu_new' || act === 'gelu_pytorch_tanh' || act === 'gelu_fast') return 'gelu_tanh';
  throw new LlmboxError(`${key} ${JSON.stringify(act)} is not supported`, {
    file,
    field: key,
    fix: 'llmbox runs gelu, gelu_new, gelu_fast and gelu_pytorch_tanh for GPT-NeoX and GPT-2',
  });
}

function heads(raw: Json, hiddenKey: string, headsKey: string, file: string) {
  const hiddenSize = positiveInt(raw, hiddenKey, file);
  const numHeads = positiveInt(raw, headsKey, file);
  if (hiddenSize % numHeads) {
    throw new LlmboxError(`${hiddenKey} ${hiddenSize} is not a multiple of ${headsKey} ${numHeads}`, {
      file,
      field: headsKey,
    });
  }
  return { hiddenSize, numHeads, numKvHeads: numHeads, headDim: hiddenSize / numHeads };
}

export function gptNeoxConfig(raw: Json, file: string): ModelConfig {
  const h = heads(raw, 'hidden_size', 'num_attention_heads', file);
  // Older configs say rotary_pct and rotary_emb_base, newer ones partial_rotary_factor and rope_theta.
  const pctKey = raw.partial_rotary_factor !== undefined ? 'partial_rotary_factor' : 'rotary_pct';
  const pct = num(raw, pctKey, file, 0.25);
  // As GPTNeoXAttention computes it: int(head_size * rotary_pct).
  const rotaryDim = Math.floor(h.headDim * pct);
  if (rotaryDim < 2 || rotaryDim % 2 || rotaryDim > h.headDim) {
    throw new LlmboxError(`${pctKey} ${pct} gives ${rotaryDim} rotary dimensions of a ${h.headDim}-wide head`, {
      file,
      field: pctKey,
      fix: 'the rotated part of each head must be an even number of dimensions, at least 2 and at most head_dim',
    });
  }
  const vocabSize = positiveInt(raw, 'vocab_size', file);
  const bias = raw.attention_bias !== false;
  return {
    ...gptDefaults(),
    architecture: 'gpt_neox',
    ...h,
    vocabSize,
    intermediateSize: positiveInt(raw, 'intermediate_size', file),
    numLayers: positiveInt(raw, 'num_hidden_layers', file),
    maxPositionEmbeddings: positiveInt(raw, 'max_position_embeddings', file, 2048),
    normEps: num(raw, 'layer_norm_eps', file, 1e-5),
    ropeTheta: num(raw, raw.rope_theta !== undefined ? 'rope_theta' : 'rotary_emb_base', file, 10000),
    ropeScaling: parseRopeScaling(raw.rope_scaling, file),
    tieWordEmbeddings: raw.tie_word_embeddings === true,
    attentionBias: bias,
    outputBias: bias,
    activation: gelu(raw, 'hidden_act', 'gelu', file),
    queryPreAttnScalar: h.headDim,
    positions: 'rope',
    rotaryDim,
    parallelResidual: raw.use_parallel_residual !== false,
    ...specialIds(raw, file, vocabSize),
    numLabels: classifierLabels(raw, file),
  };
}

/** GPT-2 options that change the attention arithmetic; llmbox computes the standard one and refuses the rest. */
const GPT2_REFUSED: [string, unknown, string][] = [
  ['scale_attn_weights', false, 'unscaled attention scores'],
  ['scale_attn_by_inverse_layer_idx', true, 'scores scaled by 1 / layer index'],
  ['add_cross_attention', true, 'cross-attention (an encoder-decoder)'],
];

export function gpt2Config(raw: Json, file: string): ModelConfig {
  for (const [key, value, what] of GPT2_REFUSED) {
    if (raw[key] === value)
      throw new LlmboxError(`${key}: ${JSON.stringify(value)} (${what}) is not supported`, {
        file,
        field: key,
        fix: `llmbox runs GPT-2 as published; remove ${key} or set it to ${JSON.stringify(!value)}`,
      });
  }
  const hiddenKey = raw.n_embd !== undefined ? 'n_embd' : 'hidden_size';
  const h = heads(raw, hiddenKey, 'n_head', file);
  const vocabSize = positiveInt(raw, 'vocab_size', file);
  return {
    ...gptDefaults(),
    architecture: 'gpt2',
    ...h,
    vocabSize,
    intermediateSize: raw.n_inner === null ? 4 * h.hiddenSize : positiveInt(raw, 'n_inner', file, 4 * h.hiddenSize),
    numLayers: positiveInt(raw, 'n_layer', file),
    maxPositionEmbeddings: positiveInt(raw, 'n_positions', file, 1024),
    normEps: num(raw, 'layer_norm_epsilon', file, 1e-5),
    ropeTheta: 10000,
    ropeScaling: null,
    tieWordEmbeddings: raw.tie_word_embeddings !== false,
    activation: gelu(raw, 'activation_function', 'gelu_new', file),
    queryPreAttnScalar: h.headDim,
    positions: 'learned',
    rotaryDim: 0,
    parallelResidual: false,
    ...specialIds(raw, file, vocabSize),
    numLabels: classifierLabels(raw, file),
  };
}

const common = (cfg: ModelConfig) => ({
  vocab_size: cfg.vocabSize,
  ...(cfg.numLabels ? { num_labels: cfg.numLabels } : {}),
  tie_word_embeddings: cfg.tieWordEmbeddings,
  ...specialIdsJson(cfg),
  torch_dtype: 'float32',
});

const actName = (cfg: ModelConfig) => (cfg.activation === 'gelu' ? 'gelu' : 'gelu_new');

export function gptNeoxHfConfig(cfg: ModelConfig): Json {
  return {
    ...hfArchitectures(cfg.numLabels, 'GPTNeoXForCausalLM', 'GPTNeoXForSequenceClassification'),
    model_type: 'gpt_neox',
    hidden_size: cfg.hiddenSize,
    intermediate_size: cfg.intermediateSize,
    num_hidden_layers: cfg.numLayers,
    num_attention_heads: cfg.numHeads,
    hidden_act: actName(cfg),
    rotary_pct: cfg.rotaryDim / cfg.headDim,
    rotary_emb_base: cfg.ropeTheta,
    rope_scaling: ropeScalingJson(cfg.ropeScaling),
    max_position_embeddings: cfg.maxPositionEmbeddings,
    layer_norm_eps: cfg.normEps,
    use_parallel_residual: cfg.parallelResidual,
    attention_bias: cfg.attentionBias,
    ...common(cfg),
  };
}

export function gpt2HfConfig(cfg: ModelConfig): Json {
  return {
    ...hfArchitectures(cfg.numLabels, 'GPT2LMHeadModel', 'GPT2ForSequenceClassification'),
    model_type: 'gpt2',
    n_embd: cfg.hiddenSize,
    n_inner: cfg.intermediateSize,
    n_layer: cfg.numLayers,
    n_head: cfg.numHeads,
    n_positions: cfg.maxPositionEmbeddings,
    activation_function: actName(cfg),
    layer_norm_epsilon: cfg.normEps,
    ...common(cfg),
  };
}
