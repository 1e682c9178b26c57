import type { ModelConfig } from './config.js';
import type { RawTensor } from './safetensors.js';

/**
 * Phi-3 stores q, k and v as one qkv_proj and gate and up as one gate_up_proj (rows stacked in that
 * order). The model code keeps them apart; these convert between the two layouts at load and save.
 */
const FUSED = [
  { fused: 'self_attn.qkv_proj', parts: ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'] },
  { fused: 'mlp.gate_up_proj', parts: ['mlp.gate_proj', 'mlp.up_proj'] },
] as const;

function rowsOf(c: ModelConfig, part: string): number {
  if (part.endsWith('q_proj')) return c.numHeads * c.headDim;
  if (part.endsWith('k_proj') || part.endsWith('v_proj')) return c.numKvHeads * c.headDim;
  return c.intermediateSize;
}

/** Splits fused [rows, in] weights into their parts (a copy of the map; other tensors shared). */
export function unfuse(c: ModelConfig, raw: Map<string, RawTensor>): Map<string, RawTensor> {
  const out = new Map(raw);
  for (let l = 0; l < c.numLayers; l++) {
    for (const { fused, parts } of FUSED) {
      const name = `model.layers.${l}.${fused}.weight`;
      const t = raw.get(name);
      if (!t) continue; // the shape check names what is missing
      const cols = t.shape[1];
      let row = 0;
      for (const part of parts) {
        const n = rowsOf(c, part);
        out.set(`model.layers.${l}.${part}.weight`, {
          shape: [n, cols],
          data: t.data.slice(row * cols, (row + n) * cols),
        });
        row += n;
      }
      out.delete(name);
    }
  }
  return out;
}

/** Stacks the parts back into fused weights, as the checkpoint had them. */
export function fuse(c: ModelConfig, raw: Map<string, RawTensor>): Map<string, RawTensor> {
  const out = new Map(raw);
  for (let l = 0; l < c.numLayers; l++) {
    for (const { fused, parts } of FUSED) {
      const pieces = parts.map((p) => raw.get(`model.layers.${l}.${p}.weight`)!);
      const cols = pieces[0].shape[1];
      const data = new Float32Array(pieces.reduce((a, p) => a + p.data.length, 0));
      let at = 0;
      for (const p of pieces) {
        data.set(p.data as Float32Array, at);
        at += p.data.length;
      }
      out.set(`model.layers.${l}.${fused}.weight`, { shape: [data.length / cols, cols], data });
      for (const p of parts) out.delete(`model.layers.${l}.${p}.weight`);
    }
  }
  return out;
}
