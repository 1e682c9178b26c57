import type { ModelConfig } from '../../lib/models/config.js';
import type { RawTensor } from '../../lib/models/safetensors.js';

/**
 * An independent float64 forward for GPT-NeoX (GPTNeoXForCausalLM) and GPT-2 (GPT2LMHeadModel), written
 * from the Hugging Face modeling code and reading the checkpoint's own tensor names and layouts:
 * NeoX's per-head interleaved query_key_value, partial rotary, parallel residual and exact gelu;
 * GPT-2's Conv1D [in, out] weights, c_attn's q|k|v columns, learned positions and gelu_new.
 * Returns logits [T * vocab].
 */
export function referenceGptLogits(c: ModelConfig, W: Map<string, RawTensor>, ids: number[]): Float64Array {
  const neox = c.architecture === 'gpt_neox';
  const T = ids.length,
    H = c.hiddenSize,
    nH = c.numHeads,
    D = H / nH;
  const w = (name: string) => {
    const t = W.get(name) ?? W.get(name.replace(/^transformer\./, ''));
    if (!t) throw new Error(`reference: no tensor ${name}`);
    return t.data;
  };
  /** y = x W^T + b: nn.Linear stores W [out, in], GPT-2's Conv1D [in, out] (`conv`). */
  const affine = (x: Float64Array, name: string, out: number, conv: boolean): Float64Array => {
    const Wd = w(`${name}.weight`),
      b = w(`${name}.bias`),
      inp = Wd.length / out;
    const y = new Float64Array(T * out);
    for (let t = 0; t < T; t++)
      for (let o = 0; o < out; o++) {
        let s = b[o];
        for (let i = 0; i < inp; i++) s += x[t * inp + i] * Wd[conv ? i * out + o : o * inp + i];
        y[t * out + o] = s;
      }
    return y;
  };
  const linear = (x: Float64Array, name: string, out: number) => affine(x, name, out, false);
  const conv1d = (x: Float64Array, name: string, out: number) => affine(x, name, out, true);
  const layerNorm = (x: Float64Array, name: string): Float64Array => {
    const g = w(`${name}.weight`),
      b = w(`${name}.bias`);
    const y = new Float64Array(x.length);
    for (let t = 0; t < T; t++) {
      let mean = 0,
        v = 0;
      for (let i = 0; i < H; i++) mean += x[t * H + i] / H;
      for (let i = 0; i < H; i++) v += (x[t * H + i] - mean) ** 2 / H;
      for (let i = 0; i < H; i++) y[t * H + i] = ((x[t * H + i] - mean) / Math.sqrt(v + c.normEps)) * g[i] + b[i];
    }
    return y;
  };
  const geluExact = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));
  const geluNew = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  const act = c.activation === 'gelu' ? geluExact : geluNew;
  /** Causal softmax attention of q, k, v [T, nH, D] (each head's rows at (t * nH + h) * D). */
  const attend = (q: Float64Array, k: Float64Array, v: Float64Array): Float64Array => {
    const out = new Float64Array(T * H);
    for (let h = 0; h < nH; h++)
      for (let t = 0; t < T; t++) {
        const s: number[] = [];
        for (let j = 0; j <= t; j++) {
          let d = 0;
          for (let i = 0; i < D; i++) d += q[(t * nH + h) * D + i] * k[(j * nH + h) * D + i];
          s.push(d / Math.sqrt(D));
        }
        const m = Math.max(...s);
        const e = s.map((x) => Math.exp(x - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= t; j++)
          for (let i = 0; i < D; i++) out[(t * nH + h) * D + i] += (e[j] / z) * v[(j * nH + h) * D + i];
      }
    return out;
  };
  /** rotate_half RoPE on the first R dims of each head, frequencies over R (GPTNeoXRotaryEmbedding). */
  const R = c.rotaryDim;
  const rope = (x: Float64Array) => {
    for (let t = 0; t < T; t++)
      for (let h = 0; h < nH; h++) {
        const o = (t * nH + h) * D;
        for (let i = 0; i < R / 2; i++) {
          const f = t / c.ropeTheta ** ((2 * i) / R);
          const a = x[o + i],
            b = x[o + i + R / 2];
          x[o + i] = a * Math.cos(f) - b * Math.sin(f);
          x[o + i + R / 2] = b * Math.cos(f) + a * Math.sin(f);
        }
      }
  };
  let x = new Float64Array(T * H);
  const wte = w(neox ? 'gpt_neox.embed_in.weight' : 'transformer.wte.weight');
  const wpe = neox ? null : w('transformer.wpe.weight');
  ids.forEach((id, t) => {
    for (let i = 0; i < H; i++) x[t * H + i] = wte[id * H + i] + (wpe ? wpe[t * H + i] : 0);
  });
  const F = c.intermediateSize;
  for (let l = 0; l < c.numLayers; l++) {
    let attn: Float64Array, mlpIn: Float64Array;
    if (neox) {
      const p = `gpt_neox.layers.${l}.`;
      // view(T, nH, 3 * D).chunk(3): head h's q, k, v are rows h*3D + [0, D), [D, 2D), [2D, 3D).
      const qkv = linear(layerNorm(x, `${p}input_layernorm`), `${p}attention.query_key_value`, 3 * H);
      const [q, k, v] = [0, 1, 2].map((part) => {
        const y = new Float64Array(T * H);
        for (let t = 0; t < T; t++)
          for (let h = 0; h < nH; h++)
            for (let i = 0; i < D; i++) y[(t * nH + h) * D + i] = qkv[t * 3 * H + h * 3 * D + part * D + i];
        return y;
      });
      rope(q);
      rope(k);
      attn = linear(attend(q, k, v), `${p}attention.dense`, H);
      const base = c.parallelResidual ? x : x.map((a, i) => a + attn[i]);
      const up = linear(layerNorm(base, `${p}post_attention_layernorm`), `${p}mlp.dense_h_to_4h`, F).map(act);
      const down = linear(up, `${p}mlp.dense_4h_to_h`, H);
      x = c.parallelResidual ? x.map((a, i) => a + attn[i] + down[i]) : base.map((a, i) => a + down[i]);
    } else {
      const p = `transformer.h.${l}.`;
      const qkv = conv1d(layerNorm(x, `${p}ln_1`), `${p}attn.c_attn`, 3 * H);
      // split(n_embd, dim=2): q, k, v are column blocks, then each splits into heads.
      const [q, k, v] = [0, 1, 2].map((part) => {
        const y = new Float64Array(T * H);
        for (let t = 0; t < T; t++) for (let i = 0; i < H; i++) y[t * H + i] = qkv[t * 3 * H + part * H + i];
        return y;
      });
      attn = conv1d(attend(q, k, v), `${p}attn.c_proj`, H);
      mlpIn = x.map((a, i) => a + attn[i]);
      const up = conv1d(layerNorm(mlpIn, `${p}ln_2`), `${p}mlp.c_fc`, F).map(act);
      const down = conv1d(up, `${p}mlp.c_proj`, H);
      x = mlpIn.map((a, i) => a + down[i]);
    }
  }
  const final = layerNorm(x, neox ? 'gpt_neox.final_layer_norm' : 'transformer.ln_f');
  const head = w(neox ? 'embed_out.weight' : 'lm_head.weight');
  const V = c.vocabSize;
  const logits = new Float64Array(T * V);
  for (let t = 0; t < T; t++)
    for (let o = 0; o < V; o++) {
      let s = 0;
      for (let i = 0; i < H; i++) s += final[t * H + i] * head[o * H + i];
      logits[t * V + o] = s;
    }
  return logits;
}

/** erf by its Maclaurin series (|x| <= 4; beyond, erf is 1 to within 2e-8). */
function erf(x: number): number {
  if (Math.abs(x) > 4) return Math.sign(x);
  let term = x,
    sum = x;
  for (let n = 1; n < 200 && Math.abs(term) > 1e-17; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}
