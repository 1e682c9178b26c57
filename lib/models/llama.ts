import * as tf from '@tensorflow/tfjs';
import { LlmboxError } from '../errors.js';
import { embedding, rmsNorm, rope as applyRope, swiglu } from '../engine/ops.js';
import type { ModelConfig } from './config.js';
import { KVCache, type PastKV } from './kv-cache.js';
import { ropeInvFreq, ropeTables } from './rope.js';
import type { RawTensor } from './safetensors.js';

/** Additive mask value: large enough that exp() underflows to exactly 0, finite so padded rows stay finite. */
const MASKED = -1e9;

export interface ForwardOptions {
  /** [batch][time], 1 for real tokens, 0 for padding. Defaults to all ones. */
  attentionMask?: number[][];
  /** Keys and values of earlier calls; this call's are appended to it. */
  cache?: KVCache;
  /**
   * A shared prefix already encoded (batch 1, every slot a real token): each row continues from it.
   * Attention reads it by broadcasting, so B rows over one prefix never copy its keys B times.
   */
  past?: PastKV;
  /** Receives this call's keys and values per layer (kept; the caller disposes them). */
  collect?: { keys: tf.Tensor4D[]; values: tf.Tensor4D[] };
}

/** Names of the linear layers (HF `*_proj`), stored transposed as [in, out] so that x @ W needs no transpose. */
const LINEARS = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj'];

/** HF parameter names and their [out, in] (or vector) shapes for a config. */
export function parameterShapes(cfg: ModelConfig): Map<string, number[]> {
  const H = cfg.hiddenSize, F = cfg.intermediateSize, q = cfg.numHeads * cfg.headDim, kv = cfg.numKvHeads * cfg.headDim;
  const m = new Map<string, number[]>([['model.embed_tokens.weight', [cfg.vocabSize, H]]]);
  for (let i = 0; i < cfg.numLayers; i++) {
    const p = `model.layers.${i}.`;
    m.set(`${p}input_layernorm.weight`, [H]);
    m.set(`${p}self_attn.q_proj.weight`, [q, H]);
    m.set(`${p}self_attn.k_proj.weight`, [kv, H]);
    m.set(`${p}self_attn.v_proj.weight`, [kv, H]);
    if (cfg.attentionBias) {
      m.set(`${p}self_attn.q_proj.bias`, [q]);
      m.set(`${p}self_attn.k_proj.bias`, [kv]);
      m.set(`${p}self_attn.v_proj.bias`, [kv]);
    }
    m.set(`${p}self_attn.o_proj.weight`, [H, q]);
    m.set(`${p}post_attention_layernorm.weight`, [H]);
    m.set(`${p}mlp.gate_proj.weight`, [F, H]);
    m.set(`${p}mlp.up_proj.weight`, [F, H]);
    m.set(`${p}mlp.down_proj.weight`, [H, F]);
  }
  m.set('model.norm.weight', [H]);
  if (!cfg.tieWordEmbeddings) m.set('lm_head.weight', [cfg.vocabSize, H]);
  return m;
}

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
  return name.endsWith('.weight') && (LINEARS.some((l) => name.includes(l)) || name === 'lm_head.weight');
}

/**
 * A LLaMA-family decoder (LLaMA, Mistral, Qwen2): RMSNorm, rotate_half RoPE, grouped-query
 * attention, SwiGLU. Parameters use Hugging Face names; linear weights are held as [in, out].
 */
export class LlamaModel {
  readonly config: ModelConfig;
  readonly params: Map<string, tf.Tensor>;
  private readonly invFreq: Float32Array;

  constructor(config: ModelConfig, params: Map<string, tf.Tensor>) {
    this.config = config;
    this.params = params;
    this.invFreq = ropeInvFreq(config);
  }

  /** Builds a model from HF-layout tensors ([out, in] linears), checking every name and shape. */
  static fromRaw(config: ModelConfig, raw: Map<string, RawTensor>, file = 'model.safetensors'): LlamaModel {
    const params = new Map<string, tf.Tensor>();
    try {
      for (const [name, shape] of parameterShapes(config)) {
        const t = raw.get(name);
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
        params.set(name, tf.tidy(() => {
          const x = tf.tensor(t.data as Float32Array, t.shape, 'float32');
          return isLinear(name) ? tf.transpose(x) : x;
        }));
      }
    } catch (e) {
      for (const t of params.values()) t.dispose();
      throw e;
    }
    return new LlamaModel(config, params);
  }

  /** Parameters in HF layout ([out, in] linears), for saving. */
  toRaw(): Map<string, RawTensor> {
    const out = new Map<string, RawTensor>();
    for (const [name, t] of this.params) {
      const hf = isLinear(name) ? tf.transpose(t) : t;
      out.set(name, { shape: hf.shape, data: hf.dataSync() as Float32Array });
      if (hf !== t) hf.dispose();
    }
    // HF checkpoints of tied models usually omit lm_head; write it anyway so any loader finds it.
    if (this.config.tieWordEmbeddings) out.set('lm_head.weight', out.get('model.embed_tokens.weight')!);
    return out;
  }

  numParameters(): number {
    let n = 0;
    for (const t of this.params.values()) n += t.size;
    return n;
  }

  private p<R extends tf.Rank>(name: string): tf.Tensor<R> {
    const t = this.params.get(name);
    if (!t) throw new Error(`llmbox: model has no parameter ${name}`);
    return t as tf.Tensor<R>;
  }

  /**
   * Runs the decoder on ids [batch][time] and returns the final-norm hidden states [batch, time, hidden].
   * With a cache, positions continue from the cache and this call's keys are appended to it.
   */
  forward(ids: number[][], opts: ForwardOptions = {}): tf.Tensor3D {
    const cfg = this.config;
    const B = ids.length, T = ids[0]?.length ?? 0;
    if (B === 0 || T === 0 || ids.some((r) => r.length !== T)) {
      throw new Error('forward: ids must be a non-empty rectangular [batch][time] array');
    }
    for (const row of ids) for (const id of row) {
      if (!Number.isInteger(id) || id < 0 || id >= cfg.vocabSize) throw new Error(`forward: token id ${id} outside [0, ${cfg.vocabSize})`);
    }
    const mask = opts.attentionMask ?? ids.map((r) => r.map(() => 1));
    const cache = opts.cache;
    if (cache && (cache.batch !== B || cache.length + T > cache.capacity)) {
      throw new Error(`forward: cache holds batch ${cache.batch} x ${cache.capacity} slots, ${cache.length} used; cannot add [${B}, ${T}]`);
    }
    const prefix = opts.past;
    if (prefix && cache) throw new Error('forward: pass either a cache or a past prefix, not both');
    const past = cache?.length ?? prefix?.length ?? 0;
    const S = cache ? cache.capacity : past + T;

    // Positions and key validity: padding takes no position, so left-padded rows match unpadded ones.
    const positions = new Int32Array(B * T);
    const valid = cache ? cache.valid : new Uint8Array(B * S);
    // The sliding window is measured in positions, not slots: padding may sit between a prefix and new tokens.
    const keyPositions = cache ? cache.positions : new Int32Array(B * S);
    if (prefix) {
      for (let b = 0; b < B; b++) {
        valid.fill(1, b * S, b * S + past);
        for (let j = 0; j < past; j++) keyPositions[b * S + j] = j;
      }
    }
    for (let b = 0; b < B; b++) {
      let pos = cache ? cache.nextPosition[b] : past;
      for (let t = 0; t < T; t++) {
        const real = mask[b][t] ? 1 : 0;
        positions[b * T + t] = real ? pos : 0;
        valid[b * S + past + t] = real;
        keyPositions[b * S + past + t] = pos;
        pos += real;
      }
      if (cache) cache.nextPosition[b] = pos;
    }
    const maskData = new Float32Array(B * T * S).fill(MASKED);
    const window = cfg.slidingWindow;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const q = past + t;
        const qPos = positions[b * T + t];
        const row = (b * T + t) * S;
        for (let j = 0; j <= q; j++) {
          if (valid[b * S + j] && (window === null || qPos - keyPositions[b * S + j] < window)) maskData[row + j] = 0;
        }
      }
    }
    const { cos, sin } = ropeTables(this.invFreq, positions);

    const out = tf.tidy(() => {
      const D = cfg.headDim, nH = cfg.numHeads, kvH = cfg.numKvHeads, group = nH / kvH;
      const cosT = tf.tensor4d(cos, [B, T, 1, D]);
      const sinT = tf.tensor4d(sin, [B, T, 1, D]);
      // [B, 1, group*T, S]: queries of one kv group are stacked along the time axis.
      let maskT: tf.Tensor = tf.tensor4d(maskData, [B, 1, T, S]);
      if (group > 1) maskT = tf.tile(maskT, [1, 1, group, 1]);
      const rope = (x: tf.Tensor4D) => applyRope(x, cosT, sinT);
      const linear = (x: tf.Tensor2D, name: string) => {
        const y = tf.matMul(x, this.p<tf.Rank.R2>(`${name}.weight`));
        const bias = this.params.get(`${name}.bias`);
        return bias ? tf.add(y, bias) : y;
      };
      const scale = 1 / Math.sqrt(D);

      let h = embedding(this.p<tf.Rank.R2>('model.embed_tokens.weight'), tf.tensor2d(ids.flat(), [B * T, 1], 'int32'))
        .reshape([B * T, cfg.hiddenSize]) as tf.Tensor2D;
      for (let l = 0; l < cfg.numLayers; l++) {
        const pre = `model.layers.${l}.`;
        const x = rmsNorm(h, this.p<tf.Rank.R1>(`${pre}input_layernorm.weight`), cfg.rmsNormEps) as tf.Tensor2D;
        const q = rope(linear(x, `${pre}self_attn.q_proj`).reshape([B, T, nH, D]));
        let k = rope(linear(x, `${pre}self_attn.k_proj`).reshape([B, T, kvH, D])).transpose([0, 2, 1, 3]) as tf.Tensor4D;
        let v = linear(x, `${pre}self_attn.v_proj`).reshape([B, T, kvH, D]).transpose([0, 2, 1, 3]) as tf.Tensor4D;
        if (opts.collect) {
          opts.collect.keys.push(tf.keep(k));
          opts.collect.values.push(tf.keep(v));
        }
        if (cache) {
          cache.write(l, k, v);
          [k, v] = cache.read(l);
        }
        // [B, kvH, group*T, D]: each kv head serves `group` query heads without repeating K and V.
        const qg = q.reshape([B, T, kvH, group, D]).transpose([0, 2, 3, 1, 4]).reshape([B, kvH, group * T, D]);
        let attn: tf.Tensor;
        if (prefix) {
          // One softmax over [prefix | own keys]; the prefix's [1, ...] keys broadcast over the batch.
          const own = tf.matMul(qg, k, false, true);
          const shared = tf.matMul(qg, prefix.keys[l], false, true);
          const probs = tf.softmax(tf.add(tf.mul(tf.concat([shared, own], 3), scale), maskT));
          const [pShared, pOwn] = tf.split(probs, [past, T], 3);
          attn = tf.add(tf.matMul(pShared, prefix.values[l]), tf.matMul(pOwn, v));
        } else {
          const scores = tf.add(tf.mul(tf.matMul(qg, k, false, true), scale), maskT);
          attn = tf.matMul(tf.softmax(scores), v); // [B, kvH, group*T, D]
        }
        const merged = attn.reshape([B, kvH, group, T, D]).transpose([0, 3, 1, 2, 4]).reshape([B * T, nH * D]) as tf.Tensor2D;
        h = tf.add(h, linear(merged, `${pre}self_attn.o_proj`));
        const y = rmsNorm(h, this.p<tf.Rank.R1>(`${pre}post_attention_layernorm.weight`), cfg.rmsNormEps) as tf.Tensor2D;
        const act = swiglu(linear(y, `${pre}mlp.gate_proj`), linear(y, `${pre}mlp.up_proj`)) as tf.Tensor2D;
        h = tf.add(h, linear(act, `${pre}mlp.down_proj`));
      }
      return rmsNorm(h, this.p<tf.Rank.R1>('model.norm.weight'), cfg.rmsNormEps).reshape([B, T, cfg.hiddenSize]) as tf.Tensor3D;
    });
    if (cache) cache.length += T;
    return out;
  }

  /** Logits [rows, vocab] for hidden-state rows [rows, hidden]: only the rows asked for are projected. */
  logits(hidden: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() =>
      this.config.tieWordEmbeddings
        ? tf.matMul(hidden, this.p<tf.Rank.R2>('model.embed_tokens.weight'), false, true)
        : tf.matMul(hidden, this.p<tf.Rank.R2>('lm_head.weight')),
    );
  }

  /** Hidden-state rows picked by flat index b * time + t, from [batch, time, hidden]. */
  static pickRows(hidden: tf.Tensor3D, flatIndices: number[]): tf.Tensor2D {
    return tf.tidy(() => {
      const [B, T, H] = hidden.shape;
      return tf.gather(hidden.reshape([B * T, H]), tf.tensor1d(flatIndices, 'int32')) as tf.Tensor2D;
    });
  }

  dispose(): void {
    for (const t of this.params.values()) t.dispose();
    this.params.clear();
  }
}
