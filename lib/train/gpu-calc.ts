import { LlmboxError } from '../errors.js';
import { DEFAULTS } from '../util/defaults.js';

/** Training set-ups the calculator knows, with the per-parameter byte counts they assume. */
export type GpuSetting = 'zero3' | 'ddp' | 'lora' | 'qlora';

export interface GpuCalcInput {
  /** Model parameters. */
  params: number;
  layers: number;
  /** Sequence length. */
  seq: number;
  hidden: number;
  vocab: number;
  gpus: number;
  /** Sequences per GPU. */
  batch: number;
  setting?: GpuSetting;
  /** LoRA: rank and how many of each layer's h x h projections get adapters (LLMBox: q, k, v, o). */
  loraRank?: number;
  loraTargets?: number;
}

export interface GpuCalcResult {
  bytes: number;
  gib: number;
  parts: { states: number; activations: number };
  /** Trainable (LoRA) parameters where the setting has them. */
  trainable: number;
  assumptions: string;
}

export const SETTING_ASSUMPTIONS: Record<GpuSetting, string> = {
  zero3:
    'LLMBox paper Eq. 1: ZeRO-3 + gradient checkpointing + FlashAttention; 16 bytes per parameter (bf16 weights and gradients, fp32 master weights and two Adam moments) sharded over n GPUs; activations (12 + 2l)bsh + 12bsv bytes per GPU',
  ddp: 'data parallel: every GPU holds all 16 bytes per parameter; same activations as Eq. 1',
  lora: 'frozen bf16 base (2 bytes per parameter) on every GPU; adapters 2hrl per target with 16 bytes each; same activations as Eq. 1',
  qlora: 'frozen 4-bit NF4 base (0.5 byte per parameter) on every GPU; adapters as LoRA; same activations as Eq. 1',
};

/**
 * Memory per GPU for training, in bytes and GiB. For `zero3` this is the paper's Eq. 1,
 * 16p/n + (12 + 2l)bsh + 12bsv; the other settings keep its activation term and change the
 * model-state term as SETTING_ASSUMPTIONS says.
 */
export function gpuMemory(input: GpuCalcInput): GpuCalcResult {
  for (const k of ['params', 'layers', 'seq', 'hidden', 'vocab', 'gpus', 'batch'] as const) {
    if (!(Number.isFinite(input[k]) && input[k] > 0))
      throw new LlmboxError(`${k} must be a positive number, got ${input[k]}`, { field: `--${k}` });
  }
  const { params: p, layers: l, seq: s, hidden: h, vocab: v, gpus: n, batch: b } = input;
  const setting = input.setting ?? 'zero3';
  const activations = (12 + 2 * l) * b * s * h + 12 * b * s * v;
  const trainable =
    setting === 'lora' || setting === 'qlora'
      ? 2 * h * (input.loraRank ?? DEFAULTS.lora.rank) * l * (input.loraTargets ?? 4)
      : p;
  const states =
    setting === 'zero3'
      ? (16 * p) / n
      : setting === 'ddp'
        ? 16 * p
        : (setting === 'lora' ? 2 : 0.5) * p + 16 * trainable;
  const bytes = states + activations;
  return {
    bytes,
    gib: bytes / 2 ** 30,
    parts: { states, activations },
    trainable,
    assumptions: SETTING_ASSUMPTIONS[setting],
  };
}

/** The fewest GPUs of `gpuGib` whose per-GPU need fits `threshold` of their memory, or null when none do (up to 512). */
export function minimumGpus(
  input: Omit<GpuCalcInput, 'gpus'>,
  gpuGib: number,
  threshold = 0.95,
): { gpus: number; gib: number } | null {
  for (let n = 1; n <= 512; n++) {
    const r = gpuMemory({ ...input, gpus: n });
    if (r.gib <= threshold * gpuGib) return { gpus: n, gib: r.gib };
    // Only ZeRO-3 shards the model states: more GPUs do not help the others.
    if ((input.setting ?? 'zero3') !== 'zero3') return null;
  }
  return null;
}

/** LLaMA-2 sizes (parameters from the released checkpoints) for the minimum-GPU table. */
export const LLAMA2: Record<string, { params: number; layers: number; hidden: number; vocab: number }> = {
  '7B': { params: 6_738_415_616, layers: 32, hidden: 4096, vocab: 32000 },
  '13B': { params: 13_015_864_320, layers: 40, hidden: 5120, vocab: 32000 },
  '70B': { params: 68_976_648_192, layers: 80, hidden: 8192, vocab: 32000 },
};

export const GPUS: Record<string, number> = { 'A100 80G': 80, 'A6000 48G': 48 };

/** One row of the minimum-GPU table. */
export interface GpuTableRow {
  model: string;
  setting: GpuSetting;
  gpu: string;
  /** Null where no number of these GPUs holds it. */
  gpus: number | null;
  per_gpu_gib: number | null;
}

/** The fewest GPUs for LLaMA-2 7B/13B/70B in every setting on each of GPUS (the LLMBox paper's table, extended to LoRA and QLoRA). */
export function gpuTable(o: { seq: number; batch: number }): GpuTableRow[] {
  const rows: GpuTableRow[] = [];
  for (const [model, m] of Object.entries(LLAMA2))
    for (const setting of ['ddp', 'zero3', 'lora', 'qlora'] as GpuSetting[])
      for (const [gpu, gib] of Object.entries(GPUS)) {
        const r = minimumGpus({ ...m, seq: o.seq, batch: o.batch, setting }, gib);
        rows.push({
          model: `LLaMA-2 ${model}`,
          setting,
          gpu,
          gpus: r?.gpus ?? null,
          per_gpu_gib: r ? Number(r.gib.toFixed(2)) : null,
        });
      }
  return rows;
}
