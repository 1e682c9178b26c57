import * as tf from '@tensorflow/tfjs';
import type { PackedMatrix } from '../engine/ops.js';
import { LlmboxError } from '../errors.js';
import type { ModelConfig } from './config.js';
import { decodeGgml, encodeGgml } from './ggml-quants.js';
import { GGML } from './gguf-file.js';
import type { RawTensor } from './safetensors.js';

/** Storage types a model's matrices can be held in outside the tensor heap (`--load-in-8bit` is q8_0, `--load-in-4bit` q4_0). */
export type PackType = 'q8_0' | 'q4_0' | 'q4_1' | 'f16' | 'bf16';
export const PACK_TYPES: Record<PackType, number> = {
  q8_0: GGML.Q8_0,
  q4_0: GGML.Q4_0,
  q4_1: GGML.Q4_1,
  f16: GGML.F16,
  bf16: GGML.BF16,
};

/** A matrix's bytes in a ggml type, as a PackedMatrix (decoded only where a backend or a gradient needs floats). */
export function packedFromBytes(weights: Uint8Array, type: number, n: number, k: number): PackedMatrix {
  return { weights, type, n, k, decode: () => decodeGgml(type, weights, n * k) };
}

/** A packed matrix decoded to float32 [n, k] with its columns in the inputs' order (whatever order it stores them in). */
export function decodedInInputOrder(pk: PackedMatrix): Float32Array {
  const stored = pk.decode();
  const order = pk.inputOrder;
  if (!order) return stored;
  const out = new Float32Array(stored.length);
  for (let r = 0; r < pk.n; r++) for (let c = 0; c < pk.k; c++) out[r * pk.k + order[c]] = stored[r * pk.k + c];
  return out;
}

/** A packed matrix decoded to float32 in the models' parameter layout, [in, out] (for LoRA's base and merging). */
export function packedAsParameter(pk: PackedMatrix): tf.Tensor2D {
  return tf.tidy(() => tf.transpose(tf.tensor2d(decodedInInputOrder(pk), [pk.n, pk.k])) as tf.Tensor2D);
}

/**
 * Packs a model's linear weights ([out, in], rows that are whole 32-element blocks for the block
 * types) into `type`, taking them out of `raw`; the embedding, norms and biases stay float32.
 */
export function packLinears(
  config: ModelConfig,
  raw: Map<string, RawTensor>,
  type: PackType,
): Map<string, PackedMatrix> {
  const code = PACK_TYPES[type];
  if (code === undefined)
    throw new LlmboxError(`unknown weight type ${type}`, {
      field: '--quant',
      fix: `use ${Object.keys(PACK_TYPES).join(', ')}`,
    });
  const packed = new Map<string, PackedMatrix>();
  for (const [name, t] of raw) {
    const linear =
      /\.(q|k|v|o|gate|up|down)_proj\.weight$/.test(name) || (name === 'lm_head.weight' && !config.tieWordEmbeddings);
    if (!linear || t.shape.length !== 2) continue;
    const [n, k] = t.shape;
    if (code !== GGML.F16 && code !== GGML.BF16 && k % 32) continue; // kept in float32, as llama.cpp keeps such rows wider
    const data = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
    packed.set(name, packedFromBytes(encodeGgml(code, data), code, n, k));
    raw.delete(name);
  }
  return packed;
}
