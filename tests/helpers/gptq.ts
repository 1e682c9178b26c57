import { writeFileSync } from 'node:fs';
import { fromHalf, toHalf } from '../../lib/models/ggml-quants.js';

/**
 * A GPTQ checkpoint written the way AutoGPTQ packs one (auto_gptq/nn_modules/qlinear: round to nearest
 * per group, as its Quantizer finds scale and zero; no Hessian update, which changes the integers and
 * not the format), with the weights that format means computed here from the integers before packing.
 */
export interface GptqOptions {
  groupSize: number; // -1: one group per row
  sym: boolean;
  /** Act-order: inputs quantized in this order (g_idx then not ascending). */
  order?: number[];
  /** "gptq" stores each zero less one (AutoGPTQ's own), "gptq_v2" as it is. */
  format: 'gptq' | 'gptq_v2';
}

export interface GptqLinearTensors {
  qweight: Int32Array; // [in / 8, out]
  qzeros: Int32Array; // [groups, out / 8]
  scales: Uint16Array; // f16 bits [groups, out]
  gIdx: Int32Array; // [in]
  groups: number;
  /** What the checkpoint means, [out, in] in float64: scale (q - zero), zero as AutoGPTQ reads it back. */
  dequantized: Float64Array;
}

export function gptqLinear(w: Float32Array, out: number, inF: number, o: GptqOptions): GptqLinearTensors {
  const size = o.groupSize === -1 ? inF : o.groupSize;
  const order = o.order ?? Array.from({ length: inF }, (_, i) => i);
  const groups = Math.ceil(inF / size);
  const gIdx = new Int32Array(inF);
  order.forEach((input, pos) => (gIdx[input] = Math.floor(pos / size)));
  const q = new Uint8Array(out * inF);
  const scales = new Uint16Array(groups * out);
  const zeros = new Uint8Array(groups * out);
  for (let j = 0; j < out; j++)
    for (let g = 0; g < groups; g++) {
      const members = order.slice(g * size, (g + 1) * size);
      const vals = members.map((i) => w[j * inF + i]);
      let lo = Math.min(0, ...vals),
        hi = Math.max(0, ...vals);
      if (o.sym) [lo, hi] = [-Math.max(-lo, hi), Math.max(-lo, hi)];
      if (lo === 0 && hi === 0) [lo, hi] = [-1, 1];
      const s = fromHalf(toHalf((hi - lo) / 15));
      const z = o.sym ? 8 : Math.round(-lo / s);
      scales[g * out + j] = toHalf(s);
      zeros[g * out + j] = z;
      for (const i of members) q[j * inF + i] = Math.min(15, Math.max(0, Math.round(w[j * inF + i] / s) + z));
    }
  const stored = (z: number) => (o.format === 'gptq' ? (z - 1) & 15 : z);
  const qweight = new Int32Array((inF / 8) * out);
  for (let i = 0; i < inF; i++)
    for (let j = 0; j < out; j++) qweight[(i >> 3) * out + j] |= q[j * inF + i] << (4 * (i & 7));
  const qzeros = new Int32Array((groups * out) / 8);
  for (let g = 0; g < groups; g++)
    for (let j = 0; j < out; j++) qzeros[g * (out / 8) + (j >> 3)] |= stored(zeros[g * out + j]) << (4 * (j & 7));
  const dequantized = new Float64Array(out * inF);
  for (let j = 0; j < out; j++)
    for (let i = 0; i < inF; i++) {
      const g = gIdx[i];
      const z = o.format === 'gptq' ? stored(zeros[g * out + j]) + 1 : zeros[g * out + j];
      dequantized[j * inF + i] = fromHalf(scales[g * out + j]) * (q[j * inF + i] - z);
    }
  return { qweight, qzeros, scales, gIdx, groups, dequantized };
}

export type StoredTensor =
  | { dtype: 'F32'; shape: number[]; data: Float32Array }
  | { dtype: 'F16'; shape: number[]; data: Uint16Array }
  | { dtype: 'I32'; shape: number[]; data: Int32Array };

/** A .safetensors file with the dtypes GPTQ checkpoints use (F16 scales, I32 packed integers). */
export function writeTypedSafetensors(file: string, tensors: Map<string, StoredTensor>): void {
  const header: Record<string, unknown> = {};
  const bodies: Buffer[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    bodies.push(bytes);
    offset += bytes.length;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([len, json, ...bodies]));
}

/** The four tensors of a GPTQ linear `prefix` (AutoGPTQ's names and dtypes). */
export function gptqTensors(prefix: string, t: GptqLinearTensors, out: number, inF: number): [string, StoredTensor][] {
  return [
    [`${prefix}.qweight`, { dtype: 'I32', shape: [inF / 8, out], data: t.qweight }],
    [`${prefix}.qzeros`, { dtype: 'I32', shape: [t.groups, out / 8], data: t.qzeros }],
    [`${prefix}.scales`, { dtype: 'F16', shape: [t.groups, out], data: t.scales }],
    [`${prefix}.g_idx`, { dtype: 'I32', shape: [inF], data: t.gIdx }],
  ];
}
