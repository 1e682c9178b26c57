import type { ModelConfig } from '../../lib/models/config.js';
import type { RawTensor } from '../../lib/models/safetensors.js';
import { referenceGptLogits } from './reference-gpt.js';

/**
 * An independent decoder forward in plain float64 loops, written from the Hugging Face modeling code
 * (LlamaForCausalLM and its relatives), not from llmbox's: Hugging Face tensor names and [out, in]
 * weights, rotate_half RoPE (default, linear and llama3 frequencies), grouped-query attention with
 * an optional sliding window, q/k RMSNorm per head (Qwen3), fused projections (Phi-3), SwiGLU, and
 * Gemma's scaled embeddings, 1 + w norms and GeGLU, and Gemma 2's soft-capping, alternating windows and
 * sandwich norms. Returns logits [T * vocab].
 */
export function referenceLogits(c: ModelConfig, stored: Map<string, RawTensor>, ids: number[]): Float64Array {
  if (c.architecture === 'gpt_neox' || c.architecture === 'gpt2') return referenceGptLogits(c, stored, ids);
  const W = splitFused(c, stored);
  const T = ids.length,
    H = c.hiddenSize,
    D = c.headDim,
    nH = c.numHeads,
    kvH = c.numKvHeads;
  const w = (name: string) => {
    const t = W.get(name);
    if (!t) throw new Error(`reference: no tensor ${name}`);
    return t;
  };
  const opt = (name: string) => W.get(name);
  /** y[T, out] = x[T, in] W^T (+ b). */
  const linear = (x: Float64Array, name: string): Float64Array => {
    const { shape, data } = w(`${name}.weight`);
    const [out, inp] = shape;
    const b = opt(`${name}.bias`)?.data;
    const y = new Float64Array((x.length / inp) * out);
    for (let t = 0; t < x.length / inp; t++)
      for (let o = 0; o < out; o++) {
        let s = b ? b[o] : 0;
        for (let i = 0; i < inp; i++) s += x[t * inp + i] * data[o * inp + i];
        y[t * out + o] = s;
      }
    return y;
  };
  const gemma = c.architecture === 'gemma' || c.architecture === 'gemma2';
  const gemma2 = c.architecture === 'gemma2';
  /** RMSNorm over rows of length n (GemmaRMSNorm multiplies by 1 + weight). */
  const rms = (x: Float64Array, n: number, weight: ArrayLike<number>): Float64Array => {
    const y = new Float64Array(x.length);
    for (let r = 0; r < x.length / n; r++) {
      let ss = 0;
      for (let i = 0; i < n; i++) ss += x[r * n + i] ** 2;
      const inv = 1 / Math.sqrt(ss / n + c.normEps);
      for (let i = 0; i < n; i++) y[r * n + i] = x[r * n + i] * inv * (gemma ? 1 + weight[i] : weight[i]);
    }
    return y;
  };
  const invFreq = Array.from({ length: D / 2 }, (_, i) => 1 / c.ropeTheta ** ((2 * i) / D)).map((f) => {
    const s = c.ropeScaling;
    if (s?.type !== 'llama3') return f;
    const lowWave = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
    const highWave = s.originalMaxPositionEmbeddings / s.highFreqFactor;
    const wave = (2 * Math.PI) / f;
    if (wave < highWave) return f;
    if (wave > lowWave) return f / s.factor;
    const smooth = (s.originalMaxPositionEmbeddings / wave - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
  /** rotate_half RoPE on [T, heads, D] in place. */
  const rope = (x: Float64Array, heads: number) => {
    for (let t = 0; t < T; t++) {
      const pos = c.ropeScaling?.type === 'linear' ? t / c.ropeScaling.factor : t;
      for (let h = 0; h < heads; h++) {
        const o = (t * heads + h) * D;
        for (let i = 0; i < D / 2; i++) {
          const a = x[o + i],
            b = x[o + i + D / 2];
          const cos = Math.cos(pos * invFreq[i]),
            sin = Math.sin(pos * invFreq[i]);
          x[o + i] = a * cos - b * sin;
          x[o + i + D / 2] = b * cos + a * sin;
        }
      }
    }
  };
  const embed = w('model.embed_tokens.weight').data;
  let x = new Float64Array(T * H);
  ids.forEach((id, t) => {
    for (let i = 0; i < H; i++) x[t * H + i] = embed[id * H + i] * (gemma ? Math.sqrt(H) : 1);
  });
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const h = rms(x, H, w(`${p}input_layernorm.weight`).data);
    let q = linear(h, `${p}self_attn.q_proj`);
    let k = linear(h, `${p}self_attn.k_proj`);
    const v = linear(h, `${p}self_attn.v_proj`);
    const qn = opt(`${p}self_attn.q_norm.weight`);
    if (qn) {
      q = rms(q, D, qn.data);
      k = rms(k, D, w(`${p}self_attn.k_norm.weight`).data);
    }
    rope(q, nH);
    rope(k, kvH);
    const att = new Float64Array(T * nH * D);
    // Gemma 2: even layers slide, odd layers see everything.
    const window = gemma2 && l % 2 === 1 ? null : c.slidingWindow;
    for (let hd = 0; hd < nH; hd++) {
      const kh = Math.floor(hd / (nH / kvH));
      for (let t = 0; t < T; t++) {
        const scores: number[] = [];
        for (let j = 0; j <= t; j++) {
          if (window !== null && t - j >= window) {
            scores.push(-Infinity);
            continue;
          }
          let s = 0;
          for (let i = 0; i < D; i++) s += q[(t * nH + hd) * D + i] * k[(j * kvH + kh) * D + i];
          const scaled = s / Math.sqrt(gemma2 ? c.queryPreAttnScalar : D);
          scores.push(c.attnSoftcap ? c.attnSoftcap * Math.tanh(scaled / c.attnSoftcap) : scaled);
        }
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= t; j++)
          for (let i = 0; i < D; i++) att[(t * nH + hd) * D + i] += (e[j] / z) * v[(j * kvH + kh) * D + i];
      }
    }
    let o = linear(att, `${p}self_attn.o_proj`);
    if (gemma2) o = rms(o, H, w(`${p}post_attention_layernorm.weight`).data);
    x = x.map((a, i) => a + o[i]);
    const h2 = rms(
      x,
      H,
      w(gemma2 ? `${p}pre_feedforward_layernorm.weight` : `${p}post_attention_layernorm.weight`).data,
    );
    const gate = linear(h2, `${p}mlp.gate_proj`);
    const up = linear(h2, `${p}mlp.up_proj`);
    // SiLU, or Gemma's gelu_pytorch_tanh.
    const gelu = (g: number) => 0.5 * g * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (g + 0.044715 * g ** 3)));
    const act = gate.map((g, i) => (gemma ? gelu(g) : g / (1 + Math.exp(-g))) * up[i]);
    let down = linear(act, `${p}mlp.down_proj`);
    if (gemma2) down = rms(down, H, w(`${p}post_feedforward_layernorm.weight`).data);
    x = x.map((a, i) => a + down[i]);
  }
  const final = rms(x, H, w('model.norm.weight').data);
  const head = opt('lm_head.weight') ? 'lm_head' : 'model.embed_tokens';
  const V = c.vocabSize;
  const logits = new Float64Array(T * V);
  const hw = w(`${head}.weight`).data;
  for (let t = 0; t < T; t++)
    for (let vv = 0; vv < V; vv++) {
      let s = 0;
      for (let i = 0; i < H; i++) s += final[t * H + i] * hw[vv * H + i];
      logits[t * V + vv] = c.finalSoftcap ? c.finalSoftcap * Math.tanh(s / c.finalSoftcap) : s;
    }
  return logits;
}

/** Phi-3's qkv_proj and gate_up_proj, cut into their row blocks (as Phi3Attention and Phi3MLP do with split/chunk). */
function splitFused(c: ModelConfig, stored: Map<string, RawTensor>): Map<string, RawTensor> {
  const W = new Map(stored);
  const cut = (name: string, parts: [string, number][]) => {
    const t = stored.get(name);
    if (!t) return;
    const cols = t.shape[1];
    let row = 0;
    for (const [part, n] of parts) {
      W.set(part, { shape: [n, cols], data: t.data.slice(row * cols, (row + n) * cols) });
      row += n;
    }
  };
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const q = c.numHeads * c.headDim,
      kv = c.numKvHeads * c.headDim;
    cut(`${p}self_attn.qkv_proj.weight`, [
      [`${p}self_attn.q_proj.weight`, q],
      [`${p}self_attn.k_proj.weight`, kv],
      [`${p}self_attn.v_proj.weight`, kv],
    ]);
    cut(`${p}mlp.gate_up_proj.weight`, [
      [`${p}mlp.gate_proj.weight`, c.intermediateSize],
      [`${p}mlp.up_proj.weight`, c.intermediateSize],
    ]);
  }
  return W;
}
