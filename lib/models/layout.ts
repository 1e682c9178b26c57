import { transposeHost } from '../engine/ops.js';
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
  if (c.architecture === 'gpt_neox') return renamed(stored, layoutIn(c, NEOX));
  if (c.architecture === 'gpt2') return renamed(stored, layoutIn(c, GPT2));
  return stored;
}

/** Whether a checkpoint of this architecture names and lays out its tensors as the model does (fromCheckpoint returns them as they are). */
export function namedAsModel(c: ModelConfig): boolean {
  return c.architecture !== 'phi3' && c.architecture !== 'gpt_neox' && c.architecture !== 'gpt2';
}

export function toCheckpoint(c: ModelConfig, raw: Map<string, RawTensor>): Map<string, RawTensor> {
  if (c.architecture === 'phi3') return fuse(c, raw);
  if (c.architecture === 'gpt_neox') return layoutOut(c, NEOX, raw);
  if (c.architecture === 'gpt2') return layoutOut(c, GPT2, raw);
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
  return { shape: [c, r], data: transposeHost(t.data, r, c) };
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

/** A checkpoint layout with q, k and v fused into one matrix: its names, and where the fused matrix keeps each row. */
interface FusedLayout {
  /** Whole-model modules: checkpoint name -> model name. */
  global: Record<string, string>;
  /** Layer `l`'s modules are named `${layers}${l}.${part}`. */
  layers: string;
  part: Record<string, string>;
  qkv: string;
  /** Fused row of part (0 q, 1 k, 2 v) row h * D + d. */
  row: (c: ModelConfig) => (part: number, h: number, d: number) => number;
  /** Parts whose weights are stored [in, out] (GPT-2's Conv1D). */
  conv1d: Set<string>;
  /** Buffers older exports saved beside the weights (causal masks, rotary tables). */
  buffers: RegExp;
  /** A prefix the body's names may lack (GPT2Model's own files have no `transformer.`). */
  optionalPrefix?: string;
}

// GPT-NeoX: query_key_value holds each head's q, k and v rows together ([heads, 3, D] along the rows).
const NEOX: FusedLayout = {
  global: {
    'gpt_neox.embed_in': 'model.embed_tokens',
    'gpt_neox.final_layer_norm': 'model.norm',
    embed_out: 'lm_head',
  },
  layers: 'gpt_neox.layers.',
  part: {
    input_layernorm: 'input_layernorm',
    post_attention_layernorm: 'post_attention_layernorm',
    'attention.dense': 'self_attn.o_proj',
    'mlp.dense_h_to_4h': 'mlp.up_proj',
    'mlp.dense_4h_to_h': 'mlp.down_proj',
  },
  qkv: 'attention.query_key_value',
  row: (c) => (part, h, d) => (h * 3 + part) * c.headDim + d,
  conv1d: new Set(),
  buffers: /^gpt_neox\.layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)$/,
};

// GPT-2: c_attn's output columns are q, then k, then v, each heads * D wide; Conv1D weights are [in, out].
const GPT2: FusedLayout = {
  global: {
    'transformer.wte': 'model.embed_tokens',
    'transformer.wpe': 'model.embed_positions',
    'transformer.ln_f': 'model.norm',
  },
  layers: 'transformer.h.',
  part: {
    ln_1: 'input_layernorm',
    ln_2: 'post_attention_layernorm',
    'attn.c_proj': 'self_attn.o_proj',
    'mlp.c_fc': 'mlp.up_proj',
    'mlp.c_proj': 'mlp.down_proj',
  },
  qkv: 'attn.c_attn',
  row: (c) => (part, h, d) => (part * c.numHeads + h) * c.headDim + d,
  conv1d: new Set(['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj']),
  buffers: /^transformer\.h\.\d+\.attn\.(bias|masked_bias)$/,
  optionalPrefix: 'transformer.',
};

/** The checkpoint's name for a model name in a rename table. */
const back = (table: Record<string, string>, internal: string) =>
  Object.entries(table).find(([, v]) => v === internal)?.[0];

const HEADS = new Set(['lm_head.weight', 'score.weight']);

function layoutIn(c: ModelConfig, L: FusedLayout): Mapping {
  const layer = new RegExp(`^${L.layers.replace(/\./g, '\\.')}(\\d+)\\.(.*)$`);
  return (stored, t) => {
    const name =
      L.optionalPrefix && !stored.startsWith(L.optionalPrefix) && !HEADS.has(stored)
        ? L.optionalPrefix + stored
        : stored;
    if (L.buffers.test(name)) return [];
    const [, mod, kind] = /^(.*)\.(weight|bias)$/.exec(name) ?? [];
    if (!mod) return null;
    if (L.global[mod]) return [[`${L.global[mod]}.${kind}`, t]];
    const m = layer.exec(mod);
    if (!m) return null;
    const [, l, part] = m;
    const v = L.conv1d.has(part) && kind === 'weight' ? transposed(t) : t;
    if (L.part[part]) return [[`model.layers.${l}.${L.part[part]}.${kind}`, v]];
    if (part !== L.qkv) return null;
    const parts = splitRows(v, c.numHeads, c.headDim, L.row(c));
    return parts.map((p, i) => [`model.layers.${l}.self_attn.${QKV[i]}.${kind}`, p]);
  };
}

function layoutOut(c: ModelConfig, L: FusedLayout, raw: Map<string, RawTensor>): Map<string, RawTensor> {
  const out = new Map<string, RawTensor>();
  for (const [name, t] of raw) {
    const [, mod, kind] = /^(.*)\.(weight|bias)$/.exec(name)!;
    const m = /^model\.layers\.(\d+)\.(.*)$/.exec(mod);
    if (!m) {
      out.set(`${back(L.global, mod) ?? mod}.${kind}`, t);
      continue;
    }
    const [, l, part] = m;
    if (part === 'self_attn.k_proj' || part === 'self_attn.v_proj') continue; // fused with q_proj
    const fused = part === 'self_attn.q_proj';
    const p = fused ? L.qkv : back(L.part, part)!;
    const v = fused
      ? joinRows(
          QKV.map((q) => raw.get(`model.layers.${l}.self_attn.${q}.${kind}`)!),
          c.numHeads,
          c.headDim,
          L.row(c),
        )
      : t;
    out.set(`${L.layers}${l}.${p}.${kind}`, L.conv1d.has(p) && kind === 'weight' ? transposed(v) : v);
  }
  return out;
}
