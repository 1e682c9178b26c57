import * as tf from '@tensorflow/tfjs';

/**
 * NF4 quantization with double quantization (Dettmers et al. 2023, QLoRA): weights in blocks of 64,
 * each value stored as a 4-bit index into the 16 NormalFloat levels (quantiles of N(0, 1) scaled to
 * [-1, 1], with an exact zero) times the block's absmax; the absmax constants themselves are stored as
 * int8 in blocks of 256 around their mean, with one float32 scale per block (8.125 + 32/16384 bits per
 * 64 weights instead of 32 per block). 4.127 bits per weight in all.
 */
export const NF4_LEVELS = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

export const NF4_BLOCK = 64;
export const ABSMAX_BLOCK = 256;

export interface NF4Tensor {
  shape: number[];
  size: number;
  /** Two 4-bit indices per byte (low nibble first). */
  codes: Uint8Array;
  /** Per 64-value block: absmax, int8 relative to absmaxOffset in units of absmaxScale[block / 256] / 127. */
  absmaxCodes: Int8Array;
  absmaxScale: Float32Array;
  absmaxOffset: number;
}

// Midpoints between neighbouring levels: a value takes the level whose interval holds it.
const MIDPOINTS = NF4_LEVELS.slice(1).map((v, i) => (v + NF4_LEVELS[i]) / 2);

function nearestLevel(x: number): number {
  let lo = 0,
    hi = MIDPOINTS.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x > MIDPOINTS[mid]) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Quantizes float32 values (any shape; blocks run over the flat order). */
export function quantizeNF4(data: Float32Array, shape: number[]): NF4Tensor {
  const n = data.length,
    blocks = Math.ceil(n / NF4_BLOCK);
  const absmax = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    let m = 0;
    for (let i = b * NF4_BLOCK; i < Math.min(n, (b + 1) * NF4_BLOCK); i++) m = Math.max(m, Math.abs(data[i]));
    absmax[b] = m;
  }
  // Double quantization of the block constants.
  const offset = absmax.reduce((a, v) => a + v, 0) / blocks;
  const groups = Math.ceil(blocks / ABSMAX_BLOCK);
  const absmaxScale = new Float32Array(groups),
    absmaxCodes = new Int8Array(blocks);
  for (let g = 0; g < groups; g++) {
    let s = 0;
    for (let b = g * ABSMAX_BLOCK; b < Math.min(blocks, (g + 1) * ABSMAX_BLOCK); b++)
      s = Math.max(s, Math.abs(absmax[b] - offset));
    absmaxScale[g] = s;
    for (let b = g * ABSMAX_BLOCK; b < Math.min(blocks, (g + 1) * ABSMAX_BLOCK); b++)
      absmaxCodes[b] = s > 0 ? Math.round((127 * (absmax[b] - offset)) / s) : 0;
  }
  const q: NF4Tensor = {
    shape,
    size: n,
    codes: new Uint8Array(Math.ceil(n / 2)),
    absmaxCodes,
    absmaxScale,
    absmaxOffset: offset,
  };
  // Values are normalised by the dequantized absmax, the one the reader will use.
  const scales = blockScales(q);
  for (let i = 0; i < n; i++) {
    const s = scales[Math.floor(i / NF4_BLOCK)];
    const code = s > 0 ? nearestLevel(data[i] / s) : 7;
    q.codes[i >> 1] |= i & 1 ? code << 4 : code;
  }
  return q;
}

/** Each block's absmax as the reader sees it (after double quantization). */
export function blockScales(q: NF4Tensor): Float32Array {
  const out = new Float32Array(q.absmaxCodes.length);
  for (let b = 0; b < out.length; b++)
    out[b] = (q.absmaxCodes[b] / 127) * q.absmaxScale[Math.floor(b / ABSMAX_BLOCK)] + q.absmaxOffset;
  return out;
}

export function dequantizeNF4(q: NF4Tensor): Float32Array {
  const out = new Float32Array(q.size);
  const scales = blockScales(q);
  for (let i = 0; i < q.size; i++) {
    const byte = q.codes[i >> 1];
    out[i] = NF4_LEVELS[i & 1 ? byte >> 4 : byte & 15] * scales[Math.floor(i / NF4_BLOCK)];
  }
  return out;
}

/** A quantized matrix as a float32 tensor (the caller disposes it). */
export function dequantizedTensor(q: NF4Tensor): tf.Tensor2D {
  return tf.tensor2d(dequantizeNF4(q), q.shape as [number, number]);
}

/** Bytes the quantized tensor holds. */
export function nf4Bytes(q: NF4Tensor): number {
  return q.codes.byteLength + q.absmaxCodes.byteLength + q.absmaxScale.byteLength + 4;
}
