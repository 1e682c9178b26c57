/**
 * ggml's storage types, encoded and decoded as llama.cpp's reference (non-SIMD) code does, so files
 * written here load in llama.cpp and files from llama.cpp decode to the same floats: f16 and bf16,
 * q8_0 (blocks of 32: an f16 scale, 32 int8), q4_0 (an f16 scale, 32 4-bit values offset by 8) and
 * q4_1 (an f16 scale and minimum, 32 4-bit values); and q4_z, llmbox's own (not a GGUF type).
 */
import { LlmboxError } from '../errors.js';
import { GGML, ggmlTypeName } from './gguf-file.js';

/**
 * Blocks of 32: an f16 scale d, a byte zero point z, a zero byte, 16 bytes of 4-bit values q (low
 * nibbles elements 0-15, as ggml's): w = d (q - z). GPTQ's groups (a scale and an integer zero per
 * output and group of inputs) are exactly this, a group being whole blocks.
 */
export const Q4_Z = 256;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 -> IEEE half, round to nearest even (as ggml_fp32_to_fp16). */
export function toHalf(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && m & 1)) m++;
    return sign | m;
  }
  let m = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && m & 1)) {
    m++;
    if (m === 0x400) {
      m = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}

export function fromHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** float32 -> bfloat16, round to nearest even (as ggml_fp32_to_bf16). */
function toBf16(x: number): number {
  f32[0] = x;
  const b = u32[0];
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 64) & 0xffff;
  return ((b + (0x7fff + ((b >>> 16) & 1))) >>> 16) & 0xffff;
}

function fromBf16(h: number): number {
  u32[0] = h << 16;
  return f32[0];
}

// The reference code computes in float32: so do these, rounding each step.
const fr = Math.fround;
/** C's roundf: halves away from zero (Math.round sends -2.5 to -2). */
const roundf = (v: number) => Math.sign(v) * Math.round(Math.abs(v));

/** Encodes float32 values (a whole number of rows) as a ggml type. */
export function encodeGgml(type: number, x: Float32Array): Uint8Array {
  const blocks = x.length / 32;
  switch (type) {
    case GGML.F32:
      return new Uint8Array(x.slice().buffer);
    case GGML.F16:
    case GGML.BF16: {
      const out = new Uint16Array(x.length);
      const enc = type === GGML.F16 ? toHalf : toBf16;
      for (let i = 0; i < x.length; i++) out[i] = enc(x[i]);
      return new Uint8Array(out.buffer);
    }
    case GGML.Q8_0: {
      const out = new Uint8Array(blocks * 34);
      const view = new DataView(out.buffer);
      for (let b = 0; b < blocks; b++) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
        const d = fr(amax / 127);
        const id = d ? fr(1 / d) : 0;
        view.setUint16(b * 34, toHalf(d), true);
        for (let j = 0; j < 32; j++) view.setInt8(b * 34 + 2 + j, roundf(fr(x[b * 32 + j] * id)));
      }
      return out;
    }
    case GGML.Q4_0: {
      const out = new Uint8Array(blocks * 18);
      const view = new DataView(out.buffer);
      for (let b = 0; b < blocks; b++) {
        // The value of largest magnitude, with its sign, maps to -8.
        let amax = 0,
          max = 0;
        for (let j = 0; j < 32; j++) {
          const v = x[b * 32 + j];
          if (Math.abs(v) > amax) [amax, max] = [Math.abs(v), v];
        }
        const d = fr(max / -8);
        const id = d ? fr(1 / d) : 0;
        view.setUint16(b * 18, toHalf(d), true);
        for (let j = 0; j < 16; j++) {
          const lo = Math.min(15, Math.trunc(fr(fr(x[b * 32 + j] * id) + 8.5)));
          const hi = Math.min(15, Math.trunc(fr(fr(x[b * 32 + 16 + j] * id) + 8.5)));
          out[b * 18 + 2 + j] = lo | (hi << 4);
        }
      }
      return out;
    }
    case GGML.Q4_1: {
      const out = new Uint8Array(blocks * 20);
      const view = new DataView(out.buffer);
      for (let b = 0; b < blocks; b++) {
        let min = Infinity,
          max = -Infinity;
        for (let j = 0; j < 32; j++) {
          min = Math.min(min, x[b * 32 + j]);
          max = Math.max(max, x[b * 32 + j]);
        }
        const d = fr(fr(max - min) / 15);
        const id = d ? fr(1 / d) : 0;
        view.setUint16(b * 20, toHalf(d), true);
        view.setUint16(b * 20 + 2, toHalf(min), true);
        for (let j = 0; j < 16; j++) {
          const lo = Math.min(15, Math.trunc(fr(fr(fr(x[b * 32 + j] - min) * id) + 0.5)));
          const hi = Math.min(15, Math.trunc(fr(fr(fr(x[b * 32 + 16 + j] - min) * id) + 0.5)));
          out[b * 20 + 4 + j] = lo | (hi << 4);
        }
      }
      return out;
    }
    default:
      throw new LlmboxError(`cannot write ${ggmlTypeName(type)}`, { fix: 'use f32, f16, bf16, q8_0, q4_0 or q4_1' });
  }
}

/** Decodes ggml-typed bytes to float32. */
export function decodeGgml(type: number, bytes: Uint8Array, n: number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  switch (type) {
    case GGML.F32:
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    case GGML.F16:
      for (let i = 0; i < n; i++) out[i] = fromHalf(view.getUint16(i * 2, true));
      return out;
    case GGML.BF16:
      for (let i = 0; i < n; i++) out[i] = fromBf16(view.getUint16(i * 2, true));
      return out;
    case GGML.Q8_0:
      for (let b = 0; b < n / 32; b++) {
        const d = fromHalf(view.getUint16(b * 34, true));
        for (let j = 0; j < 32; j++) out[b * 32 + j] = d * view.getInt8(b * 34 + 2 + j);
      }
      return out;
    case GGML.Q4_0:
      for (let b = 0; b < n / 32; b++) {
        const d = fromHalf(view.getUint16(b * 18, true));
        for (let j = 0; j < 16; j++) {
          const q = bytes[b * 18 + 2 + j];
          out[b * 32 + j] = ((q & 0x0f) - 8) * d;
          out[b * 32 + 16 + j] = ((q >> 4) - 8) * d;
        }
      }
      return out;
    case GGML.Q4_1:
      for (let b = 0; b < n / 32; b++) {
        const d = fromHalf(view.getUint16(b * 20, true));
        const m = fromHalf(view.getUint16(b * 20 + 2, true));
        for (let j = 0; j < 16; j++) {
          const q = bytes[b * 20 + 4 + j];
          out[b * 32 + j] = (q & 0x0f) * d + m;
          out[b * 32 + 16 + j] = (q >> 4) * d + m;
        }
      }
      return out;
    case Q4_Z:
      for (let b = 0; b < n / 32; b++) {
        const d = fromHalf(view.getUint16(b * 20, true));
        const z = bytes[b * 20 + 2];
        for (let j = 0; j < 16; j++) {
          const q = bytes[b * 20 + 4 + j];
          out[b * 32 + j] = ((q & 0x0f) - z) * d;
          out[b * 32 + 16 + j] = ((q >> 4) - z) * d;
        }
      }
      return out;
    default:
      throw new LlmboxError(`cannot read ${ggmlTypeName(type)} tensors`, {
        fix: 'llmbox reads f32, f16, bf16, q8_0, q4_0 and q4_1',
      });
  }
}
