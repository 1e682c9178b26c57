import * as tf from '@tensorflow/tfjs';
import { LlmboxError } from '../errors.js';
import {
  embedding,
  gelu,
  geluTanh,
  geglu,
  layerNorm,
  loraLinear,
  packedGather,
  packedMatMul,
  rmsNorm,
  rope as applyRope,
  swiglu,
  packedAttention,
  packedAttentionFused,
  addHeadMask,
  prefixAttention,
  segmentBounds,
  transposedData,
  type PackedMatrix,
} from '../engine/ops.js';
import type { ModelConfig } from './config.js';
import { KVCache, type PastKV } from './kv-cache.js';
import { ropeInvFreq, ropeTables } from './rope.js';
import type { RawTensor } from './safetensors.js';
import { dequantizedTensor, nf4Bytes, quantizeNF4, type NF4Tensor } from './nf4.js';
import { fromCheckpoint, toCheckpoint } from './layout.js';
import { decodedInInputOrder, FLOAT_TYPES, packedAsParameter } from './packed.js';

/** Additive mask value: large enough that exp() underflows to exactly 0, finite so padded rows stay finite. */
const MASKED = -1e9;

export interface ForwardOptions {
  /** [batch][time], 1 for real tokens, 0 for padding. Defaults to all ones. */
  attentionMask?: number[][];
  /** Keys and values of earlier calls; this call's are appended to it. */
  cache?: KVCache;
  /**
   * A shared prefix already encoded (batch 1, every slot a real token): each row continues from it.
   * Attention reads it by broadcasting, so B rows over one prefix never copy its keys B times. With
   * a cache, the cache holds only what follows the prefix, and the prefix is passed on every call.
   */
  past?: PastKV;
  /**
   * Packed rows: a segment id per token (0 for padding). Positions restart at each segment and a
   * token attends only to earlier tokens of its own segment (a block-diagonal causal mask), so a
   * row of packed examples computes what each example would alone. Not with `cache` or `past`.
   */
  segments?: number[][];
  /** Receives this call's keys and values per layer (kept; the caller disposes them). */
  collect?: { keys: tf.Tensor4D[]; values: tf.Tensor4D[] };
}

/** Names of the linear layers (HF `*_proj`), stored transposed as [in, out] so that x @ W needs no transpose. */
export const LINEARS = [
  'self_attn.q_proj',
  'self_attn.k_proj',
  'self_attn.v_proj',
  'self_attn.o_proj',
  'mlp.gate_proj',
  'mlp.up_proj',
  'mlp.down_proj',
];

/**
 * The model's parameter names (LLaMA's, whatever the checkpoint calls them: see layout.ts) and their
 * [out, in] (or vector) shapes for a config.
 */
export function parameterShapes(cfg: ModelConfig): Map<string, number[]> {
  const H = cfg.hiddenSize,
    F = cfg.intermediateSize,
    q = cfg.numHeads * cfg.headDim,
    kv = cfg.numKvHeads * cfg.headDim;
  const m = new Map<string, number[]>([['model.embed_tokens.weight', [cfg.vocabSize, H]]]);
  if (cfg.positions === 'learned') m.set('model.embed_positions.weight', [cfg.maxPositionEmbeddings, H]);
  const norm = (name: string, n = H) => {
    m.set(`${name}.weight`, [n]);
    if (cfg.normType === 'layer') m.set(`${name}.bias`, [n]);
  };
  const linear = (name: string, out: number, inp: number, bias: boolean) => {
    m.set(`${name}.weight`, [out, inp]);
    if (bias) m.set(`${name}.bias`, [out]);
  };
  for (let i = 0; i < cfg.numLayers; i++) {
    const p = `model.layers.${i}.`;
    norm(`${p}input_layernorm`);
    linear(`${p}self_attn.q_proj`, q, H, cfg.attentionBias);
    linear(`${p}self_attn.k_proj`, kv, H, cfg.attentionBias);
    linear(`${p}self_attn.v_proj`, kv, H, cfg.attentionBias);
    if (cfg.sandwichNorms) {
      norm(`${p}pre_feedforward_layernorm`);
      norm(`${p}post_feedforward_layernorm`);
    }
    if (cfg.qkNorm) {
      norm(`${p}self_attn.q_norm`, cfg.headDim);
      norm(`${p}self_attn.k_norm`, cfg.headDim);
    }
    linear(`${p}self_attn.o_proj`, H, q, cfg.outputBias);
    norm(`${p}post_attention_layernorm`);
    if (cfg.gatedMlp) linear(`${p}mlp.gate_proj`, F, H, cfg.mlpBias);
    linear(`${p}mlp.up_proj`, F, H, cfg.mlpBias);
    linear(`${p}mlp.down_proj`, H, F, cfg.mlpBias);
  }
  norm('model.norm');
  if (!cfg.tieWordEmbeddings) m.set('lm_head.weight', [cfg.vocabSize, H]);
  if (cfg.numLabels) m.set('score.weight', [cfg.numLabels, H]);
  return m;
}

/** Tensors a model may lack: a reward model's language-model head (transformers' classifiers have none). */
export const optionalParameter = (cfg: ModelConfig, name: string) => cfg.numLabels > 0 && name === 'lm_head.weight';

/**
 * Left-pads sequences into one [batch][time] block with its attention mask, so every row's newest
 * token sits in the last column.
 */
export function leftPad(seqs: number[][], pad = 0): { ids: number[][]; mask: number[][] } {
  const T = Math.max(...seqs.map((s) => s.length));
  return {
    ids: seqs.map((s) => [...new Array<number>(T - s.length).fill(pad), ...s]),
    mask: seqs.map((s) => Array.from({ length: T }, (_, t) => (t >= T - s.length ? 1 : 0))),
  };
}

function isLinear(name: string): boolean {
  return (
    name.endsWith('.weight') &&
    (LINEARS.some((l) => name.includes(l)) || name === 'lm_head.weight' || name === 'score.weight')
  );
}

/** Floats of attention scores per block of queries (64 MiB): bounds memory for long, batched prompts. */
const SCORE_BUDGET = 1 << 24;

/** A block of queries [t0, t1) with the key columns it may see and its additive mask [B, 1, t1-t0, cols]. */
interface QueryBlock {
  t0: number;
  t1: number;
  cols: number;
  mask: tf.Tensor4D;
}

/**
 * Splits the queries into blocks whose score matrices fit SCORE_BUDGET (16 to 256 rows). A block
 * never sees keys after its last query, so it reads only the columns up to there: the masked upper
 * triangle is skipped. One block (the usual case, and every decode step) keeps the whole mask.
 */
function queryBlocks(
  maskData: Float32Array,
  B: number,
  T: number,
  S: number,
  heads: number,
  pastSlots: number,
): QueryBlock[] {
  const rows = Math.max(16, Math.min(256, Math.floor(SCORE_BUDGET / (B * heads * S))));
  if (T <= rows) return [{ t0: 0, t1: T, cols: S, mask: tf.tensor4d(maskData, [B, 1, T, S]) }];
  const blocks: QueryBlock[] = [];
  for (let t0 = 0; t0 < T; t0 += rows) {
    const t1 = Math.min(T, t0 + rows),
      Tc = t1 - t0,
      cols = pastSlots + t1;
    const data = new Float32Array(B * Tc * cols);
    for (let b = 0; b < B; b++) {
      for (let t = t0; t < t1; t++)
        data.set(maskData.subarray((b * T + t) * S, (b * T + t) * S + cols), (b * Tc + t - t0) * cols);
    }
    blocks.push({ t0, t1, cols, mask: tf.tensor4d(data, [B, 1, Tc, cols]) });
  }
  return blocks;
}

/**
 * Causal attention of this call's (pre-scaled) queries over [shared prefix |] keys, one block of
 * queries at a time, each block's scores freed before the next. Each kv head serves `group` query
 * heads without repeating K and V: a group's queries are stacked along the time axis.
 * Returns [B*T, heads*D].
 */
function attention(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  blocks: QueryBlock[],
  shared: { keys: tf.Tensor4D; values: tf.Tensor4D } | undefined,
  d: { B: number; T: number; P: number; kvH: number; group: number; D: number; softcap?: number | null },
): tf.Tensor2D {
  // P: shared prefix slots, ahead of the own slots held in k and v.
  const { B, T, P, kvH, group, D } = d;
  // Gemma 2 caps the scores smoothly: cap * tanh(s / cap), before the mask.
  const cap = d.softcap;
  const scores = (a: tf.Tensor, b: tf.Tensor) => {
    const s = tf.matMul(a, b, false, true);
    return cap ? tf.mul(tf.tanh(tf.div(s, cap)), cap) : s;
  };
  const outs = blocks.map((blk) => tf.tidy(() => attendBlock(blk)));
  // Blocks are joined along time in 3-D: tfjs-wasm slices and concatenates 5-D tensors slowly.
  const all = outs.length === 1 ? outs[0] : tf.concat(outs, 1);
  return all.reshape([B * T, kvH * group * D]) as tf.Tensor2D;

  function attendBlock({ t0, t1, cols, mask }: QueryBlock): tf.Tensor {
    const Tc = t1 - t0;
    const whole = t0 === 0 && t1 === T;
    const qt = whole ? q : q.slice([0, t0, 0, 0], [-1, Tc, -1, -1]);
    const qb = qt
      .reshape([B, Tc, kvH, group, D])
      .transpose([0, 2, 3, 1, 4])
      .reshape([B, kvH, group * Tc, D]);
    // The whole-call block keeps the full key buffer (no copy).
    const kb = whole ? k : k.slice([0, 0, 0, 0], [-1, -1, cols - P, -1]);
    const vb = whole ? v : v.slice([0, 0, 0, 0], [-1, -1, cols - P, -1]);
    let out: tf.Tensor;
    if (shared) {
      out = prefixAttention(qb as tf.Tensor4D, shared, kb, vb, mask, cap ?? null);
    } else {
      out = tf.matMul(tf.softmax(addHeadMask(scores(qb, kb) as tf.Tensor4D, mask, group)), vb);
    }
    return out
      .reshape([B, kvH, group, Tc, D])
      .transpose([0, 3, 1, 2, 4])
      .reshape([B, Tc, kvH * group * D]);
  }
}

/** Attention per segment bucket (see segmentPlan); q [B, T, heads, D] pre-scaled, k [B, T, kvH, D], v [B*T, kvH*D]. */
function segmentedAttention(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor2D,
  plan: SegmentPlan,
  d: { kvH: number; group: number; D: number; softcap?: number | null },
): tf.Tensor2D {
  const { kvH, group, D } = d;
  const [B, T] = q.shape;
  const qf = q.reshape([B * T, kvH * group * D]) as tf.Tensor2D,
    kf = k.reshape([B * T, kvH * D]) as tf.Tensor2D;
  const outs = plan.buckets.map(({ n, L, idx, blocks }) => {
    const qb = embedding(qf, idx).reshape([n, L, kvH * group, D]) as tf.Tensor4D;
    const kb = embedding(kf, idx).reshape([n, L, kvH, D]).transpose([0, 2, 1, 3]) as tf.Tensor4D;
    const vb = embedding(v, idx).reshape([n, L, kvH, D]).transpose([0, 2, 1, 3]) as tf.Tensor4D;
    return attention(qb, kb, vb, blocks, undefined, { B: n, T: L, P: 0, kvH, group, D, softcap: d.softcap });
  });
  const all = outs.length === 1 ? outs[0] : tf.concat(outs, 0);
  return embedding(all, plan.back) as tf.Tensor2D;
}

/** The segments of a batch as runs of equal non-zero ids: flat start (b * T + t) and length. */
function segmentRuns(segments: number[][], T: number): { start: number; len: number }[] {
  const runs: { start: number; len: number }[] = [];
  segments.forEach((row, b) => {
    for (let t = 0; t < T;) {
      let e = t + 1;
      while (e < T && row[e] === row[t]) e++;
      if (row[t] !== 0) runs.push({ start: b * T + t, len: e - t });
      t = e;
    }
  });
  return runs;
}

/** Packed attention: the segments of a batch grouped by length, and where each token's output lands. */
interface SegmentPlan {
  buckets: { n: number; L: number; idx: tf.Tensor1D; blocks: QueryBlock[] }[];
  /** For every token of the batch (b * T + t): its row in the buckets' concatenated outputs. */
  back: tf.Tensor1D;
}

/**
 * Attention that never crosses segments need not be computed across them: each segment (an example of
 * a packed row, or a padded row's real tokens) is gathered into a bucket of segments of similar length
 * (lengths rounded up to a power of two, at least 16), attended there with a causal mask of its own
 * length, and scattered back. Costs about the sum of squared segment lengths instead of rows x T^2;
 * the gathers use `embedding`, whose gradient runs on every backend.
 */
function segmentPlan(segments: number[][], T: number, heads: number, window: number | null): SegmentPlan {
  const segs = segmentRuns(segments, T);
  const byKey = new Map<number, { start: number; len: number }[]>();
  for (const sg of segs) {
    const key = Math.max(16, 2 ** Math.ceil(Math.log2(sg.len)));
    byKey.set(key, [...(byKey.get(key) ?? []), sg]);
  }
  const back = new Int32Array(segments.length * T);
  let offset = 0;
  const buckets = [...byKey.keys()]
    .sort((a, b) => a - b)
    .map((key) => {
      const group = byKey.get(key)!;
      const n = group.length,
        L = Math.max(...group.map((g) => g.len));
      const idx = new Int32Array(n * L);
      const maskData = new Float32Array(n * L * L).fill(MASKED);
      group.forEach((g, i) => {
        for (let t = 0; t < L; t++) {
          // Slots past a segment's end repeat token 0: they are masked as keys and never read back.
          idx[i * L + t] = t < g.len ? g.start + t : 0;
          if (t < g.len) back[g.start + t] = offset + i * L + t;
          const row = (i * L + t) * L;
          for (let j = 0; j <= Math.min(t, g.len - 1); j++)
            if (window === null || t - j < window) maskData[row + j] = 0;
        }
      });
      offset += n * L;
      return { n, L, idx: tf.tensor1d(idx, 'int32'), blocks: queryBlocks(maskData, n, L, L, heads, 0) };
    });
  return { buckets, back: tf.tensor1d(back, 'int32') };
}

/** LoRA adapters' settings: `scale` = alpha / rank; dropout on the adapter input while training. */
/** A forward call's positions and masks, computed once for all layers (attentionInputs). */
interface AttentionInputs {
  B: number;
  T: number;
  /** Shared prefix slots, ahead of the own slots. */
  P: number;
  /** Key slots: P + the cache's capacity (or T without a cache). */
  S: number;
  /** Own slots filled by earlier calls (the cache's length). */
  before: number;
  /** Additive mask [B, T, S] (empty when packed segments are attended per segment: segmentPlan). */
  mask: Float32Array;
  /** The same without the sliding window, for layers that see everything (Gemma 2's odd layers). */
  fullMask: Float32Array | null;
  gather: boolean;
  /** Packed segments as flat [start, end) per token, where the fused packed-attention kernel can take them. */
  bounds: ReturnType<typeof segmentBounds> | null;
  /** Each token's position (padding 0), for learned position embeddings. */
  positions: Int32Array;
  cos: Float32Array;
  sin: Float32Array;
}

/** Where queries may look: the mask cut into query blocks, or a plan of segment buckets. */
interface AttentionSpan {
  plan: SegmentPlan | null;
  blocks: QueryBlock[];
}

/** The tensors every layer of one call shares: RoPE tables [B, T, 1, rotaryDim] (none for learned positions) and the attention spans. */
interface LayerShared {
  rope: { cos: tf.Tensor4D; sin: tf.Tensor4D } | null;
  /** With the config's sliding window (every layer, or Gemma 2's even layers). */
  local: AttentionSpan;
  /** Gemma 2's odd layers: no window. */
  full: AttentionSpan | null;
}

export interface LoraSettings {
  rank: number;
  alpha: number;
  dropout: number;
  targets: string[];
}

/** tfjs-wasm's heap is a 32-bit wasm memory. */
const WASM_HEAP_BYTES = 4 * 2 ** 30;
/** What a forward pass needs besides the weights (activations, the KV cache of a short prompt). */
export const WASM_HEADROOM_BYTES = 256 * 2 ** 20;

/**
 * Float parameters too large for the wasm heap fail deep inside tfjs ("memory access out of
 * bounds"), part way through loading: refused up front instead, with the ways around it. A linear
 * is uploaded, then transposed, so the largest one is briefly held twice.
 */
export function refuseHeapOverflow(
  raw: Map<string, RawTensor>,
  shapes: Map<string, number[]>,
  packed: Map<string, PackedMatrix>,
  file: string,
  heapBytes = WASM_HEAP_BYTES,
): void {
  if (tf.getBackend() !== 'wasm') return;
  let total = 0,
    largest = 0;
  for (const name of shapes.keys()) {
    const t = raw.get(name);
    if (!t || packed.has(name)) continue;
    total += t.data.length * 4;
    largest = Math.max(largest, t.data.length * 4);
  }
  const need = tf.memory().numBytes + total + largest + WASM_HEADROOM_BYTES;
  if (need <= heapBytes) return;
  const size = (b: number) => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`);
  throw new LlmboxError(
    `float32 weights of ${size(total)} do not fit the wasm backend's ${size(heapBytes)} heap (${size(need)} needed with the model's activations)`,
    {
      file,
      fix: "load with --load-in-8bit or --load-in-4bit (fluent API: { quantize: 'q8_0' }), or build the native add-on (npm run build) so f16/bf16 matrices stay as stored outside the heap, or use --backend cpu",
    },
  );
}

/**
 * A decoder-only transformer: the LLaMA family (LLaMA, Mistral, Qwen2, Qwen3, Phi-3, Gemma, Gemma 2:
 * RMSNorm, rotate_half RoPE, grouped-query attention, gated feed-forward) and GPT-NeoX and GPT-2
 * (LayerNorm, partial rotary or learned positions, plain feed-forward, parallel residuals), each a
 * set of switches in ModelConfig. Parameters use LLaMA's Hugging Face names; linear weights are held as [in, out].
 */
export class LlamaModel {
  readonly config: ModelConfig;
  readonly params: Map<string, tf.Tensor>;
  /**
   * LoRA adapters by linear layer: `<layer>.lora_A` [in, r] and `<layer>.lora_B` [r, out], in the
   * same x @ W orientation as the weights. Empty without adapters.
   */
  readonly adapters = new Map<string, tf.Tensor>();
  lora: LoraSettings | null = null;
  /**
   * Frozen base weights held as NF4 (QLoRA), by parameter name, in place of `params` entries; they
   * are dequantized where a layer runs and freed after it.
   */
  readonly quantized = new Map<string, NF4Tensor>();
  /**
   * Linear weights held outside the tensor heap in a ggml type (q8_0, q4_0, f16, ... from a GGUF file or
   * `--load-in-8bit`), by parameter name, [out, in]: matrix products read them in that type.
   */
  readonly packed = new Map<string, PackedMatrix>();
  /**
   * How attention is kept inside segments (packed or padded rows): `mask` runs the whole rows with a
   * block-diagonal causal mask; `gather` attends per segment (segmentPlan), which skips the masked
   * blocks but pays for gathers; `auto` gathers when that skips at least three quarters of the score
   * blocks (measured: packed rows of a few examples each train faster masked, npm run bench:train).
   */
  segmentAttention: 'auto' | 'mask' | 'gather' = 'auto';
  /** Set while training: seeds LoRA dropout (one draw per layer per call). Null at inference. */
  dropoutSeed: number | null = null;
  private readonly invFreq: Float32Array;

  constructor(config: ModelConfig, params: Map<string, tf.Tensor>) {
    this.config = config;
    this.params = params;
    this.invFreq = ropeInvFreq(config);
  }

  /** Builds a model from HF-layout tensors ([out, in] linears), checking every name and shape. */
  static fromRaw(
    config: ModelConfig,
    stored: Map<string, RawTensor>,
    file = 'model.safetensors',
    packed: Map<string, PackedMatrix> = new Map(),
  ): LlamaModel {
    const raw = fromCheckpoint(config, stored);
    const params = new Map<string, tf.Tensor>();
    const shapes = parameterShapes(config);
    checkUnaccounted(config, raw, shapes, file);
    refuseHeapOverflow(raw, shapes, packed, file);
    try {
      for (const [name, shape] of shapes) {
        const pk = packed.get(name);
        if (pk) {
          if (pk.n !== shape[0] || pk.k !== shape[1]) {
            throw new LlmboxError(`shape mismatch for ${name}: file has [${pk.n},${pk.k}], config implies [${shape}]`, {
              file,
              field: name,
            });
          }
          continue;
        }
        const t = raw.get(name);
        if (!t && optionalParameter(config, name)) continue;
        if (!t) {
          throw new LlmboxError(`missing tensor ${name}`, {
            file,
            field: name,
            fix: `a ${config.architecture} model with this config.json needs it (shape [${shape}])`,
          });
        }
        if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
          throw new LlmboxError(`shape mismatch for ${name}: file has [${t.shape}], config.json implies [${shape}]`, {
            file,
            field: name,
            fix: 'check hidden_size, intermediate_size, num_attention_heads, num_key_value_heads, head_dim and vocab_size',
          });
        }
        const bad = (t.data as Float32Array).findIndex((v) => !Number.isFinite(v));
        if (bad >= 0) {
          const count = (t.data as Float32Array).reduce((n, v) => n + (Number.isFinite(v) ? 0 : 1), 0);
          throw new LlmboxError(`tensor ${name} holds ${count} NaN/Inf value(s) (first at element ${bad})`, {
            file,
            field: name,
            fix: 'the weights are damaged (a diverged run or a bad conversion): use another checkpoint',
          });
        }
        params.set(
          name,
          tf.tidy(() => {
            const x = tf.tensor(t.data as Float32Array, t.shape, 'float32');
            return isLinear(name) ? tf.transpose(x) : x;
          }),
        );
      }
    } catch (e) {
      for (const t of params.values()) t.dispose();
      throw e;
    }
    const model = new LlamaModel(config, params);
    for (const [name, pk] of packed) if (shapes.has(name)) model.packed.set(name, pk);
    return model;
  }

  /** Parameters in HF layout ([out, in] linears), for saving. */
  toRaw(): Map<string, RawTensor> {
    const out = new Map<string, RawTensor>();
    for (const [name, q] of this.quantized) {
      const t = tf.tidy(() => tf.transpose(dequantizedTensor(q)));
      out.set(name, { shape: t.shape, data: t.dataSync() as Float32Array });
      t.dispose();
    }
    for (const [name, t] of this.params)
      out.set(name, isLinear(name) ? transposedData(t) : { shape: t.shape, data: t.dataSync() as Float32Array });
    for (const [name, pk] of this.packed) out.set(name, { shape: [pk.n, pk.k], data: decodedInInputOrder(pk) });
    // HF checkpoints of tied models usually omit lm_head; write it anyway so any loader finds it.
    if (this.config.tieWordEmbeddings) out.set('lm_head.weight', out.get('model.embed_tokens.weight')!);
    return toCheckpoint(this.config, out);
  }

  numParameters(): number {
    let n = 0;
    for (const t of this.params.values()) n += t.size;
    for (const q of this.quantized.values()) n += q.size;
    for (const p of this.packed.values()) n += p.n * p.k;
    return n;
  }

  /**
   * Holds every linear layer of the decoder blocks as NF4 with double quantization (QLoRA's base;
   * embeddings, norms and the head stay float32). The weights must be readable on the host. Returns
   * the bytes those weights took before and take now.
   */
  holdLinearsAsNF4(): { float32Bytes: number; nf4Bytes: number } {
    let before = 0,
      after = 0;
    for (const name of [...this.params.keys()]) {
      if (!name.startsWith('model.layers.') || !LINEARS.some((l) => name.endsWith(`${l}.weight`))) continue;
      const t = this.params.get(name)!;
      const q = quantizeNF4(t.dataSync() as Float32Array, t.shape);
      before += t.size * 4;
      after += nf4Bytes(q);
      t.dispose();
      this.params.delete(name);
      this.quantized.set(name, q);
    }
    return { float32Bytes: before, nf4Bytes: after };
  }

  /**
   * Makes the f16/bf16 matrices held as stored float32 parameters (exactly: both widen to float32
   * without rounding), for full training, which updates parameters only.
   */
  widenFloatMatrices(): void {
    for (const [name, pk] of this.packed) {
      if (!FLOAT_TYPES.has(pk.type) || pk.inputOrder) continue;
      this.params.set(
        name,
        tf.tidy(() => {
          const x = tf.tensor2d(pk.decode(), [pk.n, pk.k]);
          return isLinear(name) ? tf.transpose(x) : x;
        }),
      );
      this.packed.delete(name);
    }
  }

  /** Bytes the base weights occupy as held (float tensors, NF4 codes with their scales, packed ggml blocks); adapters excluded. */
  weightBytes(): number {
    let n = 0;
    for (const t of this.params.values()) n += t.size * 4; // tfjs holds weights as float32
    for (const q of this.quantized.values()) n += nf4Bytes(q);
    for (const p of this.packed.values()) n += p.weights.byteLength;
    return n;
  }

  /** Whether the model has this weight, however it is held (float, NF4 or packed). */
  hasParameter(name: string): boolean {
    return this.params.has(name) || this.quantized.has(name) || this.packed.has(name);
  }

  private p<R extends tf.Rank>(name: string): tf.Tensor<R> {
    const t = this.params.get(name);
    if (!t) throw new Error(`llmbox: model has no parameter ${name}`);
    return t as tf.Tensor<R>;
  }

  private useGather(segments: number[][], T: number): boolean {
    if (this.segmentAttention !== 'auto') return this.segmentAttention === 'gather';
    const blocks = segmentRuns(segments, T).reduce((n, r) => n + r.len ** 2, 0);
    return blocks <= 0.25 * segments.length * T * T;
  }

  /**
   * Runs the decoder on ids [batch][time] and returns the final-norm hidden states [batch, time, hidden].
   * With a cache, positions continue from the cache and this call's keys are appended to it.
   */
  forward(ids: number[][], opts: ForwardOptions = {}): tf.Tensor3D {
    const cfg = this.config;
    const a = this.attentionInputs(ids, opts);
    const out = tf.tidy(() => {
      const { B, T } = a;
      const span = (mask: Float32Array, window: number | null): AttentionSpan => {
        // The fused packed kernel (a.bounds) needs neither.
        if (a.bounds) return { plan: null, blocks: [] };
        const plan = a.gather ? segmentPlan(opts.segments!, T, cfg.numHeads, window) : null;
        return { plan, blocks: plan ? [] : queryBlocks(mask, B, T, a.S, cfg.numHeads, a.P + a.before) };
      };
      const R = cfg.rotaryDim;
      const shared: LayerShared = {
        rope: R ? { cos: tf.tensor4d(a.cos, [B, T, 1, R]), sin: tf.tensor4d(a.sin, [B, T, 1, R]) } : null,
        local: span(a.mask, cfg.slidingWindow),
        full: a.fullMask ? span(a.fullMask, null) : null,
      };
      const packedEmbed = this.packed.get('model.embed_tokens.weight');
      const tokens = tf.tensor2d(ids.flat(), [B * T, 1], 'int32');
      let h = (
        packedEmbed
          ? packedGather(tokens, packedEmbed)
          : embedding(this.p<tf.Rank.R2>('model.embed_tokens.weight'), tokens)
      ).reshape([B * T, cfg.hiddenSize]) as tf.Tensor2D;
      // Gemma scales the embeddings by sqrt(hidden), rounded to the weights' float32 as it does.
      if (cfg.embedScale) h = tf.mul(h, Math.fround(Math.sqrt(cfg.hiddenSize)));
      if (cfg.positions === 'learned') h = tf.add(h, this.positionEmbeddings(a.positions));
      for (let l = 0; l < cfg.numLayers; l++) {
        const input = h;
        // Each layer's intermediates are freed when it ends (long prompts would otherwise hold all of them).
        h = tf.tidy(() => this.decoderLayer(l, input, a, shared, opts));
      }
      return this.norm(h, 'model.norm.weight').reshape([B, T, cfg.hiddenSize]) as tf.Tensor3D;
    });
    if (opts.cache) opts.cache.length += a.T;
    return out;
  }

  /**
   * What attention needs before any tensor is made: each token's position (padding takes none, so
   * left-padded rows match unpadded ones; packed segments restart at 0), and the additive mask over
   * key slots [shared prefix (P, broadcast over rows) | own slots (the cache buffer, or this call's
   * keys)], causal, within segments, within the sliding window. Packed batches attended per
   * segment get a plan of segment buckets instead of one mask.
   */
  private attentionInputs(ids: number[][], opts: ForwardOptions): AttentionInputs {
    const cfg = this.config;
    const B = ids.length;
    const T = ids[0]?.length ?? 0;
    if (B === 0 || T === 0 || ids.some((r) => r.length !== T)) {
      throw new Error('forward: ids must be a non-empty rectangular [batch][time] array');
    }
    for (const row of ids)
      for (const id of row) {
        if (!Number.isInteger(id) || id < 0 || id >= cfg.vocabSize)
          throw new Error(`forward: token id ${id} outside [0, ${cfg.vocabSize})`);
      }
    const { segments, cache, past: prefix } = opts;
    if (segments && (cache || prefix || segments.length !== B || segments.some((r) => r.length !== T))) {
      throw new Error(
        'forward: segments must match ids [batch][time], and cannot be combined with a cache or a shared prefix',
      );
    }
    const real = segments ?? opts.attentionMask ?? ids.map((r) => r.map(() => 1));
    if (cache && (cache.batch !== B || cache.length + T > cache.capacity)) {
      throw new Error(
        `forward: cache holds batch ${cache.batch} x ${cache.capacity} slots, ${cache.length} used; cannot add [${B}, ${T}]`,
      );
    }
    const P = prefix?.length ?? 0;
    const C = cache ? cache.capacity : T;
    const before = cache?.length ?? 0;
    const S = P + C;

    const positions = new Int32Array(B * T);
    const ownValid = cache ? cache.valid : new Uint8Array(B * C);
    // The sliding window is measured in positions, not slots: padding may sit between a prefix and new tokens.
    const ownPositions = cache ? cache.positions : new Int32Array(B * C);
    for (let b = 0; b < B; b++) {
      let pos = cache ? Math.max(cache.nextPosition[b], P) : P;
      for (let t = 0; t < T; t++) {
        const isReal = real[b][t] ? 1 : 0;
        if (segments && t > 0 && segments[b][t] !== segments[b][t - 1]) pos = 0;
        positions[b * T + t] = isReal ? pos : 0;
        ownValid[b * C + before + t] = isReal;
        ownPositions[b * C + before + t] = pos;
        pos += isReal;
      }
      if (cache) cache.nextPosition[b] = pos;
    }
    // Packed rows on a backend with the fused kernel need neither a mask nor a segment plan.
    const bounds = segments ? segmentBounds(segments) : null;
    const fused =
      !!bounds &&
      cfg.slidingWindow === null &&
      !cfg.attnSoftcap &&
      packedAttentionFused(bounds.longest, cfg.numHeads / cfg.numKvHeads);
    const gather = !fused && !!segments && this.useGather(segments, T);
    const maskFor = (window: number | null) => {
      const mask = new Float32Array(gather ? 0 : B * T * S).fill(MASKED);
      for (let b = 0; b < (gather ? 0 : B); b++) {
        for (let t = 0; t < T; t++) {
          const qPos = positions[b * T + t];
          const row = (b * T + t) * S;
          for (let j = 0; j < P; j++) if (window === null || qPos - j < window) mask[row + j] = 0;
          const seg = segments?.[b];
          for (let j = 0; j <= before + t; j++) {
            if (seg && seg[j] !== seg[t]) continue;
            if (ownValid[b * C + j] && (window === null || qPos - ownPositions[b * C + j] < window))
              mask[row + P + j] = 0;
          }
        }
      }
      return mask;
    };
    // Gemma 2 alternates: even layers see the sliding window, odd layers everything.
    const alternating = cfg.slidingLayers === 'even' && cfg.slidingWindow !== null;
    return {
      B,
      T,
      P,
      S,
      before,
      gather,
      mask: fused ? new Float32Array(0) : maskFor(cfg.slidingWindow),
      fullMask: alternating ? maskFor(null) : null,
      bounds: fused ? bounds : null,
      positions,
      ...ropeTables(this.invFreq, positions),
    };
  }

  /** One decoder layer on [B*T, hidden]: pre-norm attention and SwiGLU MLP, each with its residual. */
  private decoderLayer(
    l: number,
    input: tf.Tensor2D,
    a: AttentionInputs,
    shared: LayerShared,
    opts: ForwardOptions,
  ): tf.Tensor2D {
    const cfg = this.config;
    const { B, T, P } = a;
    const D = cfg.headDim,
      nH = cfg.numHeads,
      kvH = cfg.numKvHeads,
      group = nH / kvH;
    const pre = `model.layers.${l}.`;
    const rotate = (x: tf.Tensor4D) => this.rotate(x, shared.rope);
    const x = this.norm(input, `${pre}input_layernorm.weight`);
    // [B, T, n, D] per head; Qwen3 normalises each head's queries and keys before RoPE.
    const heads = (y: tf.Tensor2D, n: number, norm: 'q_norm' | 'k_norm'): tf.Tensor4D => {
      if (!cfg.qkNorm) return y.reshape([B, T, n, D]);
      return this.norm(y.reshape([B * T * n, D]), `${pre}self_attn.${norm}.weight`).reshape([B, T, n, D]);
    };
    // Queries are scaled here, on [B, T, heads, D], rather than the scores (1/sqrt(D), or Gemma 2's query_pre_attn_scalar).
    const q = tf.mul(
      rotate(heads(this.linear(x, `${pre}self_attn.q_proj`), nH, 'q_norm')),
      1 / Math.sqrt(cfg.queryPreAttnScalar),
    ) as tf.Tensor4D;
    const span = shared.full && l % 2 === 1 ? shared.full : shared.local;
    const softcap = cfg.attnSoftcap;
    const kTok = rotate(heads(this.linear(x, `${pre}self_attn.k_proj`), kvH, 'k_norm'));
    const vTok = this.linear(x, `${pre}self_attn.v_proj`);
    const attend = () => {
      let k = kTok.transpose([0, 2, 1, 3]) as tf.Tensor4D;
      let v = vTok.reshape([B, T, kvH, D]).transpose([0, 2, 1, 3]) as tf.Tensor4D;
      if (opts.collect) {
        opts.collect.keys.push(tf.keep(k));
        opts.collect.values.push(tf.keep(v));
      }
      if (opts.cache) {
        opts.cache.write(l, k, v);
        [k, v] = opts.cache.read(l);
      }
      const prefix = opts.past && { keys: opts.past.keys[l], values: opts.past.values[l] };
      return attention(q, k, v, span.blocks, prefix, { B, T, P, kvH, group, D, softcap });
    };
    const merged = a.bounds
      ? (packedAttention(
          q.reshape([B * T, nH, D]) as tf.Tensor3D,
          kTok.reshape([B * T, kvH, D]) as tf.Tensor3D,
          vTok.reshape([B * T, kvH, D]) as tf.Tensor3D,
          a.bounds,
        ).reshape([B * T, nH * D]) as tf.Tensor2D)
      : span.plan
        ? segmentedAttention(q, kTok, vTok, span.plan, { kvH, group, D, softcap })
        : attend();
    // Gemma 2 normalises each sub-layer's output too (post_attention_layernorm there is that, and the
    // MLP has its own pre and post norms); the others norm only the inputs.
    const sandwich = cfg.sandwichNorms;
    const o = this.linear(merged, `${pre}self_attn.o_proj`);
    const attn = sandwich ? this.norm(o, `${pre}post_attention_layernorm.weight`) : o;
    // GPT-NeoX's parallel residual: the feed-forward reads the layer's input, not the attended stream.
    const attended = tf.add(input, attn) as tf.Tensor2D;
    const y = this.norm(
      cfg.parallelResidual ? input : attended,
      sandwich ? `${pre}pre_feedforward_layernorm.weight` : `${pre}post_attention_layernorm.weight`,
    );
    const mlp = this.mlp(y, pre);
    return tf.add(attended, sandwich ? this.norm(mlp, `${pre}post_feedforward_layernorm.weight`) : mlp) as tf.Tensor2D;
  }

  /** The feed-forward block: down(act(gate) * up), or down(act(up)) without a gate. */
  private mlp(y: tf.Tensor2D, pre: string): tf.Tensor2D {
    const cfg = this.config;
    const up = this.linear(y, `${pre}mlp.up_proj`);
    let act: tf.Tensor;
    if (cfg.gatedMlp) {
      const gate = this.linear(y, `${pre}mlp.gate_proj`);
      act = cfg.activation === 'gelu_tanh' ? geglu(gate, up) : swiglu(gate, up);
    } else act = cfg.activation === 'gelu' ? gelu(up) : geluTanh(up);
    return this.linear(act as tf.Tensor2D, `${pre}mlp.down_proj`);
  }

  /** RoPE on [B, T, heads, D]: on the first rotaryDim dimensions of each head (GPT-NeoX), the rest passed through. */
  private rotate(x: tf.Tensor4D, rope: LayerShared['rope']): tf.Tensor4D {
    if (!rope) return x;
    const R = this.config.rotaryDim,
      D = x.shape[3];
    if (R === D) return applyRope(x, rope.cos, rope.sin);
    const [rot, pass] = tf.split(x, [R, D - R], 3) as [tf.Tensor4D, tf.Tensor4D];
    return tf.concat([applyRope(rot, rope.cos, rope.sin), pass], 3) as tf.Tensor4D;
  }

  /** GPT-2's learned position table, rows picked by each token's position; positions past the table are refused. */
  private positionEmbeddings(positions: Int32Array): tf.Tensor2D {
    const table = this.p<tf.Rank.R2>('model.embed_positions.weight');
    const last = positions.reduce((m, p) => Math.max(m, p), 0);
    if (last >= table.shape[0])
      throw new LlmboxError(`position ${last} is past the model's ${table.shape[0]} learned positions`, {
        field: 'n_positions',
        fix: `keep each prompt with its continuation within ${table.shape[0]} tokens`,
      });
    return embedding(table, tf.tensor2d(positions, [positions.length, 1], 'int32')).reshape([
      positions.length,
      this.config.hiddenSize,
    ]) as tf.Tensor2D;
  }

  /** The model's norm over the last axis: RMSNorm (Gemma stores its weight as an offset from 1), or LayerNorm with its bias. */
  private norm(x: tf.Tensor2D, name: string): tf.Tensor2D {
    const w = this.p<tf.Rank.R1>(name);
    if (this.config.normType === 'layer')
      return layerNorm(x, w, this.p<tf.Rank.R1>(name.replace(/weight$/, 'bias')), this.config.normEps) as tf.Tensor2D;
    return rmsNorm(
      x,
      this.config.normWeightOffset ? (tf.add(w, 1) as tf.Tensor1D) : w,
      this.config.normEps,
    ) as tf.Tensor2D;
  }

  /** x @ W (+ bias), with the layer's LoRA adapter (dropout while training) and NF4 weights dequantized here. */
  private linear(x: tf.Tensor2D, name: string): tf.Tensor2D {
    const q = this.quantized.get(`${name}.weight`);
    const pk = this.packed.get(`${name}.weight`);
    const W = q ? () => dequantizedTensor(q) : pk ? () => packedAsParameter(pk) : this.p<tf.Rank.R2>(`${name}.weight`);
    const lora = this.lora;
    const A = lora && (this.adapters.get(`${name}.lora_A`) as tf.Tensor2D | undefined);
    let y: tf.Tensor2D;
    if (pk && !(lora && A)) y = packedMatMul(x, pk);
    else if (lora && A) {
      const drop = lora.dropout > 0 && this.dropoutSeed !== null;
      const xd = drop ? (tf.dropout(x, lora.dropout, undefined, this.dropoutSeed!++) as tf.Tensor2D) : x;
      y = loraLinear(x, xd, W, A, this.adapters.get(`${name}.lora_B`) as tf.Tensor2D, lora.alpha / lora.rank);
    } else y = tf.matMul(x, typeof W === 'function' ? W() : W);
    const bias = this.params.get(`${name}.bias`);
    return bias ? tf.add(y, bias) : y;
  }

  /** Logits [rows, vocab] for hidden-state rows [rows, hidden]: only the rows asked for are projected. */
  logits(hidden: tf.Tensor2D): tf.Tensor2D {
    if (!this.config.tieWordEmbeddings && !this.params.has('lm_head.weight') && !this.packed.has('lm_head.weight'))
      throw new LlmboxError('this reward model has no language-model head: it scores responses, it does not generate', {
        field: 'lm_head.weight',
        fix: 'use llmbox score-rm / reward() with it, or a causal LM for generation',
      });
    return tf.tidy((): tf.Tensor2D => {
      const head = this.packed.get(this.config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight');
      const logits: tf.Tensor2D = head
        ? packedMatMul(hidden, head)
        : this.config.tieWordEmbeddings
          ? tf.matMul(hidden, this.p<tf.Rank.R2>('model.embed_tokens.weight'), false, true)
          : tf.matMul(hidden, this.p<tf.Rank.R2>('lm_head.weight'));
      // Gemma 2 caps the logits: cap * tanh(logits / cap).
      const cap = this.config.finalSoftcap;
      return cap ? (tf.mul(tf.tanh(tf.div(logits, cap)), cap) as tf.Tensor2D) : logits;
    });
  }

  /** Hidden-state rows picked by flat index b * time + t, from [batch, time, hidden]. */
  static pickRows(hidden: tf.Tensor3D, flatIndices: number[]): tf.Tensor2D {
    return tf.tidy(() => {
      const [B, T, H] = hidden.shape;
      return tf.gather(hidden.reshape([B * T, H]), tf.tensor1d(flatIndices, 'int32')) as tf.Tensor2D;
    });
  }

  dispose(): void {
    for (const t of [...this.params.values(), ...this.adapters.values()]) t.dispose();
    this.params.clear();
    this.adapters.clear();
    this.quantized.clear();
  }
}

/**
 * Tensors the config does not account for (weights of a fifth layer for a config of four, another
 * architecture's) mean the config and the weights disagree: an error, not weights left unread. The
 * rotary inverse frequencies some exports keep are recomputed, and a tied head stored beside the
 * embeddings must equal them.
 */
function checkUnaccounted(
  config: ModelConfig,
  raw: Map<string, RawTensor>,
  shapes: Map<string, number[]>,
  file: string,
): void {
  const extra = [...raw.keys()].filter((n) => !shapes.has(n) && !n.endsWith('rotary_emb.inv_freq'));
  const head = extra.indexOf('lm_head.weight');
  if (head >= 0 && config.tieWordEmbeddings) {
    const a = raw.get('lm_head.weight')!.data,
      b = raw.get('model.embed_tokens.weight')?.data;
    if (!b || a.length !== b.length || a.some((v, i) => v !== b[i])) {
      throw new LlmboxError('lm_head.weight differs from model.embed_tokens.weight, but config.json ties them', {
        file,
        field: 'tie_word_embeddings',
        fix: 'set "tie_word_embeddings": false for these weights',
      });
    }
    extra.splice(head, 1);
  }
  if (!extra.length) return;
  const layers = new Set(
    extra.map((n) => /^model\.layers\.(\d+)\./.exec(n)?.[1]).filter((x): x is string => x !== undefined),
  );
  const hint = layers.size
    ? ` (weights for layer(s) ${[...layers].slice(0, 4).join(', ')} of a config with num_hidden_layers ${config.numLayers})`
    : '';
  throw new LlmboxError(
    `${extra.length} tensor(s) the config does not account for, e.g. ${extra.slice(0, 3).join(', ')}${hint}`,
    { file, field: extra[0], fix: 'use the config.json that belongs to these weights' },
  );
}
