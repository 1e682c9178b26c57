import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { allocWeightBytes } from '../engine/native.js';
import type { PackedMatrix } from '../engine/ops.js';
import { LlmboxError } from '../errors.js';
import type { ModelConfig } from './config.js';
import { fromHalf, Q4_Z, toHalf } from './ggml-quants.js';
import { packedFromBytes } from './packed.js';
import type { RawTensor } from './safetensors.js';

/**
 * GPTQ checkpoints (AutoGPTQ, GPTQModel, transformers): a linear `p` is stored as `p.qweight` (int32
 * [in / 8, out], input 8i + t in bits 4t..4t+3 of row i), `p.qzeros` (int32 [groups, out / 8], output
 * 8j + t in bits 4t), `p.scales` (f16 [groups, out]) and `p.g_idx` (int32 [in], each input's group):
 * w[out j][in i] = scale[g][j] (q[i][j] - zero[g][j]), g = g_idx[i]. AutoGPTQ's own format ("gptq",
 * the default) stores each zero less one; "gptq_v2" stores it as it is.
 */
export interface GptqSettings {
  groupSize: number;
  /** Act-order: inputs were quantized in a permuted order, so g_idx is needed. */
  descAct: boolean;
  /** What the stored zero points lack: 1 for checkpoint_format "gptq", 0 for "gptq_v2". */
  zeroOffset: number;
  /** The weights' file name without .safetensors (AutoGPTQ's model_file_base_name; else "model"). */
  baseName: string;
  file: string;
}

type Json = Record<string, unknown>;

const FUSED_LAYOUTS = new Set(['phi3', 'gpt_neox', 'gpt2']);

function readJson(file: string): Json | null {
  if (!existsSync(file)) return null;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Json;
  } catch (e) {
    throw new LlmboxError(`not valid JSON: ${(e as Error).message}`, { file });
  }
}

/**
 * How a checkpoint folder's weights are quantized: config.json's quantization_config, or AutoGPTQ's
 * quantize_config.json beside it. null for float weights; methods llmbox cannot read are refused here,
 * before their tensors would be read as something else.
 */
export function readQuantization(dir: string, config: ModelConfig): GptqSettings | null {
  const configFile = join(dir, 'config.json');
  const fromConfig = readJson(configFile)?.quantization_config as Json | undefined;
  const autoGptqFile = join(dir, 'quantize_config.json');
  const q = fromConfig ?? readJson(autoGptqFile);
  if (!q) return null;
  const file = fromConfig ? configFile : autoGptqFile;
  const field = (name: string) => (fromConfig ? `quantization_config.${name}` : name);
  const method = String(q.quant_method ?? 'gptq').toLowerCase();
  if (method !== 'gptq')
    throw new LlmboxError(`quant_method ${JSON.stringify(q.quant_method)} checkpoints are not supported`, {
      file,
      field: field('quant_method'),
      fix:
        method === 'bitsandbytes'
          ? 'load the float checkpoint with --load-in-4bit --quant nf4 (or --load-in-8bit): llmbox quantizes it as it loads'
          : 'llmbox reads GPTQ (4-bit) and GGUF checkpoints; load the float checkpoint, quantized at load with --load-in-8bit or --load-in-4bit',
    });
  if (q.bits !== 4)
    throw new LlmboxError(`GPTQ with bits=${JSON.stringify(q.bits)} is not supported`, {
      file,
      field: field('bits'),
      fix: 'llmbox reads 4-bit GPTQ checkpoints',
    });
  const format = String(q.checkpoint_format ?? 'gptq');
  if ((format !== 'gptq' && format !== 'gptq_v2') || q.is_marlin_format === true)
    throw new LlmboxError(`GPTQ checkpoint_format ${JSON.stringify(format)} is not supported`, {
      file,
      field: field(q.is_marlin_format === true ? 'is_marlin_format' : 'checkpoint_format'),
      fix: 'use the checkpoint in GPTQ\'s own layout ("gptq" or "gptq_v2"), not one repacked for a GPU kernel',
    });
  const groupSize = q.group_size ?? 128;
  if (
    groupSize !== -1 &&
    !(Number.isInteger(groupSize) && (groupSize as number) > 0 && (groupSize as number) % 32 === 0)
  )
    throw new LlmboxError(`GPTQ group_size ${JSON.stringify(groupSize)} is not supported`, {
      file,
      field: field('group_size'),
      fix: 'llmbox reads groups of a multiple of 32 inputs (32, 64, 128, ...) or -1 (one group per row)',
    });
  if (FUSED_LAYOUTS.has(config.architecture))
    throw new LlmboxError(`GPTQ checkpoints of ${config.architecture} models are not supported yet`, {
      file,
      field: 'model_type',
      fix: 'GPTQ loads for architectures with separate q, k, v, gate and up projections (llama, mistral, qwen2, qwen3, gemma); load the float checkpoint with --load-in-4bit',
    });
  const base = typeof q.model_file_base_name === 'string' && !fromConfig ? q.model_file_base_name : 'model';
  if (!/^[\w.-]+$/.test(base))
    throw new LlmboxError(`model_file_base_name ${JSON.stringify(base)} is not a file name`, {
      file,
      field: 'model_file_base_name',
    });
  return {
    groupSize: groupSize as number,
    descAct: q.desc_act === true,
    zeroOffset: format === 'gptq' ? 1 : 0,
    baseName: base,
    file,
  };
}

interface GptqLinear {
  qweight: RawTensor;
  qzeros: RawTensor;
  scales: RawTensor;
  gIdx?: RawTensor;
}

/**
 * Takes every GPTQ linear out of `raw` as a q4_z matrix named `p.weight` (out of the heap, 20 bytes per
 * 32 weights). Inputs are stored sorted by group, so that act-order checkpoints (desc_act: g_idx not
 * ascending) keep one scale and zero per block; the matrix's inputOrder says where each came from.
 */
export function packGptq(raw: Map<string, RawTensor>, q: GptqSettings, weightsFile: string): Map<string, PackedMatrix> {
  const packed = new Map<string, PackedMatrix>();
  for (const name of [...raw.keys()].filter((n) => n.endsWith('.qweight'))) {
    const prefix = name.slice(0, -'.qweight'.length);
    const part = (s: string) => raw.get(`${prefix}.${s}`);
    const [qzeros, scales] = [part('qzeros'), part('scales')];
    if (!qzeros || !scales)
      throw new LlmboxError(`GPTQ linear ${prefix} has qweight but no ${qzeros ? 'scales' : 'qzeros'}`, {
        file: weightsFile,
        field: `${prefix}.${qzeros ? 'scales' : 'qzeros'}`,
        fix: 'the checkpoint is incomplete: download it again',
      });
    if (raw.has(`${prefix}.weight`))
      throw new LlmboxError(`${prefix} is stored twice, as weight and as GPTQ qweight`, {
        file: weightsFile,
        field: `${prefix}.weight`,
      });
    packed.set(
      `${prefix}.weight`,
      gptqMatrix(prefix, { qweight: raw.get(name)!, qzeros, scales, gIdx: part('g_idx') }, q, weightsFile),
    );
    for (const s of ['qweight', 'qzeros', 'scales', 'g_idx']) raw.delete(`${prefix}.${s}`);
  }
  if (!packed.size)
    throw new LlmboxError('the config says GPTQ but no tensor ends in .qweight', {
      file: weightsFile,
      fix: `check that the weights belong to ${q.file}`,
    });
  return packed;
}

function gptqMatrix(prefix: string, t: GptqLinear, q: GptqSettings, file: string): PackedMatrix {
  const bad = (field: string, what: string): never => {
    throw new LlmboxError(`GPTQ tensor ${prefix}.${field} ${what}`, { file, field: `${prefix}.${field}` });
  };
  if (!(t.qweight.data instanceof Int32Array) || t.qweight.shape.length !== 2)
    bad('qweight', 'is not a 2-D int32 tensor');
  const [k, n] = [t.qweight.shape[0] * 8, t.qweight.shape[1]];
  if (k % 32) bad('qweight', `has ${k} inputs, not a multiple of 32`);
  const groups = t.scales.shape[0];
  if (t.scales.shape.length !== 2 || t.scales.shape[1] !== n)
    bad('scales', `has shape [${t.scales.shape}], not [groups, ${n}]`);
  if (!(t.qzeros.data instanceof Int32Array) || t.qzeros.shape.join() !== `${groups},${n / 8}`)
    bad('qzeros', `has shape [${t.qzeros.shape}], not [${groups}, ${n / 8}] of int32`);
  const group = groupOfInputs(prefix, t.gIdx, k, groups, q, file);
  const order = Int32Array.from({ length: k }, (_, i) => i).sort((a, b) => group[a] - group[b] || a - b);
  for (let b = 0; b < k; b += 32)
    if (group[order[b]] !== group[order[b + 31]])
      bad('g_idx', `puts inputs of different groups in one block of 32 (after sorting by group)`);
  const [qw, qz, sc] = [t.qweight.data as Int32Array, t.qzeros.data as Int32Array, t.scales.data];
  const bytes = allocWeightBytes((n * k * 20) / 32);
  const view = new DataView(bytes.buffer);
  const codes = new Uint8Array(32);
  // Block by block across the outputs, so that qweight's rows are read in order.
  for (let b = 0; b < k / 32; b++) {
    const g = group[order[b * 32]];
    for (let j = 0; j < n; j++) {
      const scale = sc[g * n + j];
      const half = toHalf(scale);
      if (fromHalf(half) !== scale) bad('scales', `holds ${scale}, not a float16 value (GPTQ scales are float16)`);
      const at = (j * (k / 32) + b) * 20;
      view.setUint16(at, half, true);
      bytes[at + 2] = ((qz[g * (n / 8) + (j >> 3)] >>> (4 * (j & 7))) & 15) + q.zeroOffset;
      for (let e = 0; e < 32; e++) {
        const i = order[b * 32 + e];
        codes[e] = (qw[(i >> 3) * n + j] >>> (4 * (i & 7))) & 15;
      }
      for (let e = 0; e < 16; e++) bytes[at + 4 + e] = codes[e] | (codes[e + 16] << 4);
    }
  }
  const m = packedFromBytes(bytes, Q4_Z, n, k);
  return order.every((v, i) => v === i) ? m : { ...m, inputOrder: order };
}

/** Each input's group: g_idx where the checkpoint has it, else consecutive runs of group_size. */
function groupOfInputs(
  prefix: string,
  gIdx: RawTensor | undefined,
  k: number,
  groups: number,
  q: GptqSettings,
  file: string,
): Int32Array {
  const size = q.groupSize === -1 ? k : q.groupSize;
  if (!gIdx) {
    if (q.descAct)
      throw new LlmboxError(`GPTQ linear ${prefix} has no g_idx, which act-order (desc_act) checkpoints need`, {
        file,
        field: `${prefix}.g_idx`,
        fix: 'the checkpoint is incomplete: download it again',
      });
    if (Math.ceil(k / size) !== groups)
      throw new LlmboxError(
        `GPTQ tensor ${prefix}.scales has ${groups} groups; ${k} inputs in groups of ${size} make ${Math.ceil(k / size)}`,
        {
          file,
          field: `${prefix}.scales`,
          fix: `check group_size in ${q.file}`,
        },
      );
    return Int32Array.from({ length: k }, (_, i) => Math.floor(i / size));
  }
  const g = gIdx.data;
  if (!(g instanceof Int32Array) || g.length !== k || g.some((v) => v < 0 || v >= groups))
    throw new LlmboxError(`GPTQ tensor ${prefix}.g_idx is not ${k} group numbers below ${groups}`, {
      file,
      field: `${prefix}.g_idx`,
    });
  return g;
}
