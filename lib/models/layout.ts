import type { ModelConfig } from './config.js';
import { fuse, unfuse } from './fused.js';
import type { RawTensor } from './safetensors.js';

/**
 * Checkpoint layouts. The model code names every parameter as LLaMA does (`model.layers.N.self_attn.q_proj`,
 * [out, in] in raw form); GPT-NeoX, GPT-2 and Phi-3 checkpoints name and pack theirs differently.
 * These convert a checkpoint's tensors to the model's names at load and back at save, so a saved
 * folder is what transformers itself writes. Names they do not know pass through unchanged (the
 * model's shape check reports them), and a map already in the model's names converts to itself.
 */
export function fromCheckpoint(c: ModelConfig, stored: Map<string, RawTensor>): Map<string, RawTensor> {
  if (c.architecture === 'phi3') return unfuse(c, stored);
  if (c.architecture === 'gpt_neox') return renamed(stored, (n, t) => neoxIn(c, n, t));
  if (c.architecture === 'gpt2') return renamed(stored, (n, t) => gpt2In(c, n, t));
  return stored;
}

export function toCheckpoint(c: ModelConfig, raw: Map<string, RawTensor>): Map<string, RawTensor> {
  if (c.architecture === 'phi3') return fuse(c, raw);
  if (c.architecture === 'gpt_neox') return neoxOut(c, raw);
  if (c.architecture === 'gpt2') return gpt2Out(c, raw);
  return raw;
}

/** A stored tensor's model tensors: renamed, split, transposed; [] for a buffer that holds no weights. */
type Mapping = (name: string, t: RawTensor) => [string, RawTensor][] | null;

function renamed(stored: Map<string, RawTensor>, map: Mapping): Map<string, RawTensor> {
  const out = new Map<string, RawTensor>();
  for (const [name, t] of stored) for (const [n, v] of map(name, t) ?? [[name, t]]) out.set(n, v);
  return out;
}

/** [rows, cols] <-> [cols, rows]: GPT-2's Conv1D keeps its weights [in, out]. */
function transposed(t: RawTensor): RawTensor {
  const [r, c] = t.shape;
  const data = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) data[j * r + i] = t.data[i * c + j];
  return { shape: [c, r], data };
}

/**
 * Rows of q, k and v (each `heads * D`) gathered from a fused [3 * heads * D, cols] matrix (cols 1 for a bias),
 * where `row(part, h, d)` says where the fused matrix keeps part's row h * D + d.
 */
function splitRows(t: RawTensor, heads: number, D: number, row: (part: number, h: number, d: number) => number) {
  const cols = t.shape.length === 2 ? t.shape[1] : 1;
  return [0, 1, 2].map((part) => {
    const data = new Float32Array(heads * D * cols);
    for (let h = 0; h < heads; h++)
      for (let d = 0; d < D; d++) {
        const from = row(part, h, d) * cols;
        data.set(t.data.subarray(from, from + cols), (h * D + d) * cols);
      }
    return { shape: t.shape.length === 2 ? [heads * D, cols] : [heads * D], data };
  });
}

/** The inverse of splitRows: q, k, v back into one fused matrix. */
function joinRows(parts: RawTensor[], heads: number, D: number, row: (part: number, h: number, d: number) => number) {
  const cols = parts[0].shape.length === 2 ? parts[0].shape[1] : 1;
  const data = new Float32Array(3 * heads * D * cols);
  parts.forEach((t, part) => {
    for (let h = 0; h < heads; h++)
      for (let d = 0; d < D; d++) {
        const from = (h * D + d) * cols;
        data.set(t.data.subarray(from, from + cols), row(part, h, d) * cols);
      }
  });
  return { shape: parts[0].shape.length === 2 ? [3 * heads * D, cols] : [3 * heads * D], data };
}

const QKV = ['q_proj', 'k_proj', 'v_proj'];

// GPT-NeoX: query_key_value holds each head's q, k and v rows together ([heads, 3, D] along the rows).
const neoxRow = (D: number) => (part: number, h: number, d: number) => (h * 3 + part) * D + d;
const NEOX_GLOBAL: Record<string, string> = {
  'gpt_neox.embed_in': 'model.embed_tokens',
  'gpt_neox.final_layer_norm': 'model.norm',
  embed_out: 'lm_head',
};
const NEOX_LAYER: Record<string, string> = {
  input_layernorm: 'input_layernorm',
  post_attention_layernorm: 'post_attention_layernorm',
  'attention.dense': 'self_attn.o_proj',
  'mlp.dense_h_to_4h': 'mlp.up_proj',
  'mlp.dense_4h_to_h': 'mlp.down_proj',
};
// Causal-mask and rotary buffers older exports saved with the weights.
const NEOX_BUFFERS = /^gpt_neox\.layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)$/;

function neoxIn(c: ModelConfig, name: string, t: RawTensor): [string, RawTensor][] | null {
  if (NEOX_BUFFERS.test(name)) return [];
  const [, mod, kind] = /^(.*)\.(weight|bias)$/.exec(name) ?? [];
  if (!mod) return null;
  if (NEOX_GLOBAL[mod]) return [[`${NEOX_GLOBAL[mod]}.${kind}`, t]];
  const m = /^gpt_neox\.layers\.(\d+)\.(.*)$/.exec(mod);
  if (!m) return null;
  const [, l, part] = m;
  if (NEOX_LAYER[part]) return [[`model.layers.${l}.${NEOX_LAYER[part]}.${kind}`, t]];
  if (part !== 'attention.query_key_value') return null;
  const parts = splitRows(t, c.numHeads, c.headDim, neoxRow(c.headDim));
  return parts.map((p, i) => [`model.layers.${l}.self_attn.${QKV[i]}.${kind}`, p]);
}

/** The checkpoint's name for a model name in a rename table. */
const back = (table: Record<string, string>, internal: string) =>
  Object.entries(table).find(([, v]) => v === internal)?.[0];

function neoxOut(c: ModelConfig, raw: Map<string, RawTensor>): Map<string, RawTensor> {
  const out = new Map<string, RawTensor>();
  for (const [name, t] of raw) {
    const [, mod, kind] = /^(.*)\.(weight|bias)$/.exec(name)!;
    const m = /^model\.layers\.(\d+)\.(.*)$/.exec(mod);
    if (!m) {
      out.set(`${back(NEOX_GLOBAL, mod) ?? mod}.${kind}`, t);
      continue;
    }
    const [, l, part] = m;
    if (part === 'self_attn.q_proj') {
      const parts = QKV.map((p) => raw.get(`model.layers.${l}.self_attn.${p}.${kind}`)!);
      out.set(
        `gpt_neox.layers.${l}.attention.query_key_value.${kind}`,
        joinRows(parts, c.numHeads, c.headDim, neoxRow(c.headDim)),
      );
    } else if (part !== 'self_attn.k_proj' && part !== 'self_attn.v_proj') {
      out.set(`gpt_neox.layers.${l}.${back(NEOX_LAYER, part)}.${kind}`, t);
    }
  }
  return out;
}

// GPT-2: c_attn's output columns are q, then k, then v, each heads * D wide.
const gpt2Row = (heads: number, D: number) => (part: number, h: number, d: number) => part * heads * D + h * D + d;
const GPT2_GLOBAL: Record<string, string> = {
  wte: 'model.embed_tokens',
  wpe: 'model.embed_positions',
  ln_f: 'model.norm',
};
const GPT2_LAYER: Record<string, string> = {
  ln_1: 'input_layernorm',
  ln_2: 'post_attention_layernorm',
  'attn.c_proj': 'self_attn.o_proj',
  'mlp.c_fc': 'mlp.up_proj',
  'mlp.c_proj': 'mlp.down_proj',
};
const CONV1D = /^(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)$/;
// The causal-mask buffers older exports saved with the weights.
const GPT2_BUFFERS = /^h\.\d+\.attn\.(bias|masked_bias)$/;

function gpt2In(c: ModelConfig, name: string, t: RawTensor): [string, RawTensor][] | null {
  // GPT2LMHeadModel saves the body under transformer., GPT2Model (the original hub files) without it.
  const bare = name.replace(/^transformer\./, '');
  if (GPT2_BUFFERS.test(bare)) return [];
  const m = /^(.*)\.(weight|bias)$/.exec(bare);
  if (!m) return null;
  const [, mod, kind] = m;
  if (GPT2_GLOBAL[mod]) return [[`${GPT2_GLOBAL[mod]}.${kind}`, t]];
  const layer = /^h\.(\d+)\.(.*)$/.exec(mod);
  if (!layer) return null;
  const [, l, part] = layer;
  const v = CONV1D.test(part) && kind === 'weight' ? transposed(t) : t;
  if (GPT2_LAYER[part]) return [[`model.layers.${l}.${GPT2_LAYER[part]}.${kind}`, v]];
  if (part !== 'attn.c_attn') return null;
  const parts = splitRows(v, c.numHeads, c.headDim, gpt2Row(c.numHeads, c.headDim));
  return parts.map((p, i) => [`model.layers.${l}.self_attn.${QKV[i]}.${kind}`, p]);
}

function gpt2Out(c: ModelConfig, raw: Map<string, RawTensor>): Map<string, RawTensor> {
  const out = new Map<string, RawTensor>();
  for (const [name, t] of raw) {
    if (name === 'lm_head.weight' || name === 'score.weight') {
      out.set(name, t);
      continue;
    }
    const [, mod, kind] = /^(.*)\.(weight|bias)$/.exec(name)!;
    const m = /^model\.layers\.(\d+)\.(.*)$/.exec(mod);
    if (!m) {
      out.set(`transformer.${back(GPT2_GLOBAL, mod)}.${kind}`, t);
      continue;
    }
    const [, l, part] = m;
    const conv = (p: string, v: RawTensor) => (CONV1D.test(p) && kind === 'weight' ? transposed(v) : v);
    if (part === 'self_attn.q_proj') {
      const parts = QKV.map((p) => raw.get(`model.layers.${l}.self_attn.${p}.${kind}`)!);
      const fused = joinRows(parts, c.numHeads, c.headDim, gpt2Row(c.numHeads, c.headDim));
      out.set(`transformer.h.${l}.attn.c_attn.${kind}`, conv('attn.c_attn', fused));
    } else if (part !== 'self_attn.k_proj' && part !== 'self_attn.v_proj') {
      const p = back(GPT2_LAYER, part)!;
      out.set(`transformer.h.${l}.${p}.${kind}`, conv(p, t));
    }
  }
  return out;
}
