import * as tf from '@tensorflow/tfjs';
import { loadNative, allocWeightBytes } from '../engine/native.js';
import type { PackedMatrix } from '../engine/ops.js';
import { LlmboxError } from '../errors.js';
import type { ModelConfig } from './config.js';
import { decodeGgml, encodeGgml } from './ggml-quants.js';
import { GGML, tensorBytes } from './gguf-file.js';
import type { RawTensor, SafetensorsDtype, StoredTensor, TakeStored } from './safetensors.js';
import { namedAsModel } from './layout.js';

/** Storage types a model's matrices can be held in outside the tensor heap (`--load-in-8bit` is q8_0, `--load-in-4bit` q4_0). */
export type PackType = 'q8_0' | 'q4_0' | 'q4_1' | 'f16' | 'bf16';
export const PACK_TYPES: Record<PackType, number> = {
  q8_0: GGML.Q8_0,
  q4_0: GGML.Q4_0,
  q4_1: GGML.Q4_1,
  f16: GGML.F16,
  bf16: GGML.BF16,
};

/** ggml types whose values widen to float32 exactly. */
export const FLOAT_TYPES: ReadonlySet<number> = new Set([GGML.F32, GGML.F16, GGML.BF16]);

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
    if (!packable(config, name, t.shape, code)) continue;
    const data = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    packed.set(name, packedFromBytes(encodeStored(code, bytes, GGML.F32), code, t.shape[0], t.shape[1]));
    raw.delete(name);
  }
  return packed;
}

/** Whether packLinears packs this tensor: a linear's [out, in] weight, in rows of whole 32-element blocks for the block types. */
function packable(config: ModelConfig, name: string, shape: number[], code: number): boolean {
  const linear =
    /\.(q|k|v|o|gate|up|down)_proj\.weight$/.test(name) || (name === 'lm_head.weight' && !config.tieWordEmbeddings);
  if (!linear || shape.length !== 2) return false;
  return FLOAT_TYPES.has(code) || shape[1] % 32 === 0; // other rows stay float32, as llama.cpp keeps such rows wider
}

const STORED_TYPES: Partial<Record<SafetensorsDtype, number>> = { F16: GGML.F16, BF16: GGML.BF16 };

/**
 * What a folder's reader holds outside the heap as it reads (readSafetensors' `take`), into `packed`: with
 * `quantize`, the linears packed one at a time (a bf16 7B model is never wholly float32); else, where
 * `keepStored`, f16/bf16 linears and embeddings in their stored type (no float32 copy at all). Only for
 * checkpoints in the model's own names (see layout.ts), and names the model has, so others still get reported.
 */
export function packWhileReading(
  config: ModelConfig,
  packed: Map<string, PackedMatrix>,
  opts: { shapes: Map<string, number[]>; quantize?: PackType; keepStored: boolean; file: string },
): TakeStored | undefined {
  if (!namedAsModel(config)) return undefined;
  const { shapes } = opts;
  const code = opts.quantize && PACK_TYPES[opts.quantize];
  return (name, t) => {
    if (t.shape.length !== 2 || !shapes.has(name)) return false;
    const [n, k] = t.shape;
    if (code !== undefined) {
      const from = t.dtype === 'F32' ? GGML.F32 : STORED_TYPES[t.dtype];
      if (from === undefined || !packable(config, name, t.shape, code)) return false;
      refuseNonFinite(name, t, opts.file);
      packed.set(name, packedFromBytes(encodeStored(code, t.bytes, from), code, n, k));
      return true;
    }
    const stored = STORED_TYPES[t.dtype];
    // A tied embedding stays float32: the file's lm_head copy is checked against it (checkUnaccounted).
    const embedding = (name === 'model.embed_tokens.weight' && !config.tieWordEmbeddings) || name === 'lm_head.weight';
    if (!opts.keepStored || stored === undefined || !(embedding || packable(config, name, t.shape, stored)))
      return false;
    refuseNonFinite(name, t, opts.file);
    packed.set(name, packedFromBytes(t.bytes, stored, n, k));
    return true;
  };
}

const NATIVE_QUANTS = new Set<number>([GGML.Q8_0, GGML.Q4_0, GGML.Q4_1]);

/**
 * Stored f32/f16/bf16 bytes encoded as `code`: by the add-on where it has the type (encodeGgml's
 * bytes, about ten times faster: JavaScript took 190 s of a 7B folder's --load-in-8bit), else here.
 */
function encodeStored(code: number, bytes: Uint8Array, storedType: number): Uint8Array {
  const count = bytes.byteLength / (storedType === GGML.F32 ? 4 : 2);
  const addon = loadNative().addon;
  if (!addon || !NATIVE_QUANTS.has(code)) {
    // Aligned float32 bytes are already the values: no copy.
    const aligned = storedType === GGML.F32 && bytes.byteOffset % 4 === 0;
    return encodeGgml(
      code,
      aligned ? new Float32Array(bytes.buffer, bytes.byteOffset, count) : decodeGgml(storedType, bytes, count),
    );
  }
  const out = allocWeightBytes(tensorBytes(code, [count]));
  addon.quantizeRows(bytes, storedType, out, code, count);
  return out;
}

/** NaN or Inf in a stored f32/f16/bf16 tensor (all exponent bits set) would load as believable logits or scales: refused by element. */
function refuseNonFinite(name: string, t: StoredTensor, file: string): void {
  const bad = firstNonFinite(t);
  if (bad < 0) return;
  throw new LlmboxError(`tensor ${name} holds NaN/Inf values (first at element ${bad})`, {
    file,
    field: name,
    fix: 'the weights are damaged (a diverged run or a bad conversion): use another checkpoint',
  });
}

/** The index of the first value with all exponent bits set, or -1: by the add-on where it can (a 7B model's matrices in well under a second), else here. */
function firstNonFinite(t: StoredTensor): number {
  const addon = loadNative().addon;
  if (addon && typeof addon.firstNonFinite === 'function' && t.bytes.byteOffset % 4 === 0)
    return addon.firstNonFinite(t.bytes, t.dtype === 'F32' ? GGML.F32 : STORED_TYPES[t.dtype]!);
  const bytes = t.bytes.byteOffset % 4 ? new Uint8Array(t.bytes) : t.bytes;
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
  let bad = -1;
  if (t.dtype === 'F32') {
    for (let i = 0; i < words.length && bad < 0; i++) if ((words[i] & 0x7f800000) === 0x7f800000) bad = i;
  } else {
    const exp = t.dtype === 'BF16' ? 0x7f80 : 0x7c00;
    // Two values a step: the scan of a 7B model's matrices takes seconds, not tens of them.
    const hi = exp << 16;
    for (let i = 0; i < words.length && bad < 0; i++) {
      const v = words[i];
      if ((v & exp) === exp) bad = 2 * i;
      else if ((v & hi) === hi) bad = 2 * i + 1;
    }
    const n = bytes.byteLength >> 1;
    if (bad < 0 && n % 2 && ((bytes[2 * n - 2] | (bytes[2 * n - 1] << 8)) & exp) === exp) bad = n - 1;
  }
  return bad;
}
