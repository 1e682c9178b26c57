import { LlmboxError } from '../../lib/errors.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
/** The tiny model shipped in the repository (models/stories260K). */
export const STORIES = resolve(ROOT, 'models/stories260K');
/** The benchmark and training data sets beside the checkout; test files that read them say so in their first line. */
export const SHARED_DATA = resolve(ROOT, '../shared/data');

const created: string[] = [];
process.on('exit', () => {
  for (const d of created) rmSync(d, { recursive: true, force: true });
});

/** A fresh temporary folder, removed when the test process exits. */
export function tmp(prefix = 'llmbox-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  created.push(dir);
  return dir;
}

/** Tiny configs that exercise each architecture's distinguishing features. */
export const TINY_CONFIGS: Record<string, Record<string, unknown>> = {
  'llama GQA + llama3 rope, untied': {
    model_type: 'llama',
    vocab_size: 61,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-5,
    rope_theta: 500000,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
    rope_scaling: {
      rope_type: 'llama3',
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 16,
    },
  },
  'llama linear rope, tied, MHA, attention and mlp biases': {
    model_type: 'llama',
    attention_bias: true,
    mlp_bias: true,
    vocab_size: 50,
    hidden_size: 24,
    intermediate_size: 40,
    num_hidden_layers: 2,
    num_attention_heads: 3,
    num_key_value_heads: 3,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-6,
    rope_scaling: { type: 'linear', factor: 2 },
    tie_word_embeddings: true,
    bos_token_id: 1,
    eos_token_id: 2,
  },
  'mistral sliding window 5': {
    model_type: 'mistral',
    vocab_size: 40,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 1,
    max_position_embeddings: 64,
    sliding_window: 5,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
  },
  'qwen2 attention bias, tied': {
    model_type: 'qwen2',
    vocab_size: 45,
    hidden_size: 32,
    intermediate_size: 40,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 64,
    rope_theta: 1000000,
    tie_word_embeddings: true,
    bos_token_id: 1,
    eos_token_id: 2,
  },
  'phi3 fused qkv and gate_up, sliding window 6': {
    model_type: 'phi3',
    vocab_size: 41,
    hidden_size: 32,
    intermediate_size: 40,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 64,
    sliding_window: 6,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
  },
  'gemma GeGLU, sqrt(hidden) embeddings, 1 + w norms, multi-query': {
    model_type: 'gemma',
    vocab_size: 43,
    hidden_size: 32,
    intermediate_size: 56,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 1,
    head_dim: 16,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-6,
    hidden_activation: 'gelu_pytorch_tanh',
    tie_word_embeddings: true,
    bos_token_id: 2,
    eos_token_id: 1,
  },
  'gemma2 soft-capping, windows on even layers, sandwich norms': {
    model_type: 'gemma2',
    vocab_size: 43,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 3,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 16,
    query_pre_attn_scalar: 24,
    attn_logit_softcapping: 1.5,
    final_logit_softcapping: 2.5,
    sliding_window: 5,
    max_position_embeddings: 64,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: true,
    bos_token_id: 2,
    eos_token_id: 1,
  },
  'qwen3 q/k norm, head_dim apart from hidden/heads': {
    model_type: 'qwen3',
    vocab_size: 47,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 12,
    max_position_embeddings: 64,
    rope_theta: 1000000,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: false,
    bos_token_id: 1,
    eos_token_id: 2,
  },
  'gpt_neox partial rotary, parallel residual, exact gelu, LayerNorm': {
    model_type: 'gpt_neox',
    vocab_size: 53,
    hidden_size: 32,
    intermediate_size: 48,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    rotary_pct: 0.5,
    rotary_emb_base: 10000,
    hidden_act: 'gelu',
    use_parallel_residual: true,
    layer_norm_eps: 1e-5,
    max_position_embeddings: 64,
    tie_word_embeddings: false,
    bos_token_id: 0,
    eos_token_id: 0,
  },
  'gpt_neox sequential residual, full rotary, gelu_new': {
    model_type: 'gpt_neox',
    vocab_size: 44,
    hidden_size: 24,
    intermediate_size: 40,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    partial_rotary_factor: 1,
    rope_theta: 500,
    hidden_act: 'gelu_new',
    use_parallel_residual: false,
    layer_norm_eps: 1e-5,
    max_position_embeddings: 64,
    tie_word_embeddings: false,
    bos_token_id: 0,
    eos_token_id: 0,
  },
  'gpt2 learned positions, Conv1D, fused c_attn, tied': {
    model_type: 'gpt2',
    vocab_size: 57,
    n_embd: 32,
    n_head: 4,
    n_layer: 2,
    n_positions: 64,
    n_inner: null,
    activation_function: 'gelu_new',
    layer_norm_epsilon: 1e-5,
    bos_token_id: 56,
    eos_token_id: 56,
  },
};

/** The LlmboxError that `fn` throws (fails the test when it throws nothing or something else). */
export function llmboxErrorOf(fn: () => unknown): LlmboxError {
  try {
    fn();
  } catch (e) {
    if (e instanceof LlmboxError) return e;
    throw e;
  }
  throw new Error('expected an LlmboxError, nothing was thrown');
}
