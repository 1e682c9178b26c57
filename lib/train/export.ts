/**
 * Training past one machine: the mixed, tokenized (and packed) training set as Parquet, with the
 * config and launch command of a GPU trainer (LLaMA-Factory or TRL), sized by the GPU calculator.
 * The folder the trainer writes (Hugging Face weights or a PEFT adapter) loads back with -m.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { stringify } from 'yaml';
import { LlmboxError } from '../errors.js';
import { DEFAULTS } from '../util/defaults.js';
import type { LoadedModel } from '../models/load.js';
import { parameterShapes } from '../models/llama.js';
import { writeFileAtomic } from '../util/fs.js';
import { isTarget, type TrainingRow } from './batches.js';
import { gpuMemory, minimumGpus } from './gpu-calc.js';
import { hyperparameters, trainingData, type TrainOptions } from './trainer.js';
import { LLAMAFACTORY_KEYS, TRL_KEYS } from './export-keys.js';

export type ExportTarget = 'llamafactory' | 'trl';

export interface ExportOptions {
  target: ExportTarget;
  /** Memory of one GPU of the cluster, GiB (default 80: an A100 80G). */
  gpuGib?: number;
}

export interface GpuPlan {
  gpus: number;
  /** 0: every GPU holds the whole model (data parallel); 3: ZeRO-3 shards it. */
  zeroStage: 0 | 3;
  perGpuGib: number;
}

export interface ExportResult {
  dir: string;
  files: string[];
  rows: { train: number; validation: number };
  plan: GpuPlan;
  command: string;
}

/** The data columns one row becomes, for each trainer: what its collator reads. */
function columns(target: ExportTarget, row: TrainingRow, packed: boolean): Record<string, number[]> {
  let n = row.segments.length;
  while (n > 0 && row.segments[n - 1] === 0) n--;
  const ids = row.ids.slice(0, n),
    segments = row.segments.slice(0, n);
  // A token is learned where the model predicts it from the token before it in the same example.
  const learned = ids.map((_, t) => (t > 0 && isTarget(row, t - 1) ? 1 : 0));
  const positions: number[] = [];
  segments.forEach((s, t) => positions.push(t > 0 && segments[t - 1] === s ? positions[t - 1] + 1 : 0));
  if (target === 'llamafactory') {
    // LLaMA-Factory's neat_packing: attention_mask holds 1, 2, ... per packed example (0 is padding).
    return {
      input_ids: ids,
      attention_mask: packed ? segments : segments.map((s) => (s ? 1 : 0)),
      position_ids: positions,
      labels: ids.map((id, t) => (learned[t] ? id : -100)),
    };
  }
  const lengths: number[] = [];
  segments.forEach((s, t) => (t > 0 && segments[t - 1] === s ? lengths[lengths.length - 1]++ : lengths.push(1)));
  // TRL: completion_mask selects the learned tokens; seq_lengths restart positions (padding-free packing).
  return { input_ids: ids, completion_mask: learned, seq_lengths: lengths };
}

function writeParquet(file: string, rows: Record<string, number[]>[]): void {
  const names = Object.keys(rows[0] ?? {});
  const list = (name: string) => [
    { name, repetition_type: 'REQUIRED' as const, num_children: 1, converted_type: 'LIST' as const },
    { name: 'list', repetition_type: 'REPEATED' as const, num_children: 1 },
    { name: 'element', type: 'INT32' as const, repetition_type: 'REQUIRED' as const },
  ];
  const buf = parquetWriteBuffer({
    columnData: names.map((name) => ({ name, data: rows.map((r) => r[name]) })),
    schema: [{ name: 'root', num_children: names.length }, ...names.flatMap(list)],
  });
  writeFileAtomic(file, new Uint8Array(buf));
}

/** GPUs and ZeRO stage for the run: data parallel on one GPU when the model fits, else the fewest GPUs under ZeRO-3 (the paper's Eq. 1). */
export function planGpus(loaded: LoadedModel, o: TrainOptions, maxLength: number, gpuGib: number): GpuPlan {
  const cfg = loaded.model.config;
  const params = [...parameterShapes(cfg).values()].reduce((a, s) => a + s.reduce((x, y) => x * y, 1), 0);
  const base = {
    params,
    layers: cfg.numLayers,
    seq: maxLength,
    hidden: cfg.hiddenSize,
    vocab: cfg.vocabSize,
    batch: o.batchSize ?? DEFAULTS.train.batchSize,
  };
  const setting = o.lora ? (o.qlora ? 'qlora' : 'lora') : 'ddp';
  const single = gpuMemory({ ...base, gpus: 1, setting, loraRank: o.lora?.rank });
  if (single.gib <= 0.95 * gpuGib) return { gpus: 1, zeroStage: 0, perGpuGib: single.gib };
  const sharded = minimumGpus({ ...base, setting: 'zero3' }, gpuGib);
  if (!sharded)
    throw new LlmboxError(`the model does not fit ${gpuGib} GiB GPUs even with ZeRO-3 at batch ${base.batch}`, {
      field: '--batch-size',
      fix: 'lower --batch-size or --max-length, or train with LoRA',
    });
  return { gpus: sharded.gpus, zeroStage: 3, perGpuGib: sharded.gib };
}

/** DeepSpeed ZeRO-3 with the Hugging Face integration's "auto" values (filled in from the trainer's arguments). */
const ZERO3 = {
  train_batch_size: 'auto',
  train_micro_batch_size_per_gpu: 'auto',
  gradient_accumulation_steps: 'auto',
  gradient_clipping: 'auto',
  zero_allow_untested_optimizer: true,
  bf16: { enabled: 'auto' },
  zero_optimization: {
    stage: 3,
    overlap_comm: true,
    contiguous_gradients: true,
    stage3_gather_16bit_weights_on_model_save: true,
  },
};

function checkKeys(config: Record<string, unknown>, allowed: ReadonlySet<string>, peer: string): void {
  const unknown = Object.keys(config).filter((k) => !allowed.has(k));
  if (unknown.length) throw new Error(`export: ${peer} does not define ${unknown.join(', ')}`);
}

/** Writes DIR/data/{train,validation}.parquet, the trainer's config and launch.sh; trains nothing here. */
export async function exportTraining(
  loaded: LoadedModel,
  o: TrainOptions & { output: string },
  e: ExportOptions,
): Promise<ExportResult> {
  const { data, stage, seed, maxLength } = await trainingData(loaded, o);
  try {
    const dir = resolve(o.output);
    mkdirSync(join(dir, 'data'), { recursive: true });
    const packed = stage === 'sft' && !!o.packing;
    const train = Array.from({ length: data.train.length }, (_, i) => columns(e.target, data.train.get(i), packed));
    const val = data.val.map((r) => columns(e.target, r, packed));
    if (!train.length) throw new LlmboxError('no training rows after tokenization', { field: '--dataset' });
    writeParquet(join(dir, 'data', 'train.parquet'), train);
    if (val.length) writeParquet(join(dir, 'data', 'validation.parquet'), val);
    const h = hyperparameters(o, train.length);
    const plan = planGpus(loaded, o, maxLength, e.gpuGib ?? DEFAULTS.train.exportGpuGib);
    const files = [
      join(dir, 'data', 'train.parquet'),
      ...(val.length ? [join(dir, 'data', 'validation.parquet')] : []),
    ];
    if (plan.zeroStage === 3) {
      writeFileSync(join(dir, 'ds_z3_config.json'), JSON.stringify(ZERO3, null, 2) + '\n');
      files.push(join(dir, 'ds_z3_config.json'));
    }
    const lora = o.lora
      ? {
          rank: o.lora.rank,
          alpha: o.lora.alpha ?? 2 * o.lora.rank,
          dropout: o.lora.dropout ?? DEFAULTS.lora.dropout,
          targets: o.lora.targets ?? [...DEFAULTS.lora.targets],
        }
      : undefined;
    const common = {
      base: resolve(loaded.dir),
      dir,
      stage,
      seed,
      maxLength,
      h,
      plan,
      lora,
      qlora: !!o.qlora,
      packed,
      hasVal: val.length > 0,
    };
    const { file, command } = e.target === 'llamafactory' ? writeLlamaFactory(common) : writeTrl(common);
    files.push(file);
    const launch = join(dir, 'launch.sh');
    writeFileSync(
      launch,
      `#!/usr/bin/env bash\n# ${e.target === 'llamafactory' ? 'LLaMA-Factory' : 'TRL'} on ${plan.gpus} GPU(s)${plan.zeroStage ? ' with DeepSpeed ZeRO-3' : ''}; llmbox's estimate: ${plan.perGpuGib.toFixed(1)} GiB per GPU.\n# The trained model (or adapter) is written to ${join(dir, 'model')}; evaluate it with: llmbox eval -m ${join(dir, 'model')} ...\nset -euo pipefail\ncd "$(dirname "$0")"\n${command}\n`,
      { mode: 0o755 },
    );
    files.push(launch);
    return { dir, files, rows: { train: train.length, validation: val.length }, plan, command };
  } finally {
    data.close();
  }
}

interface Common {
  base: string;
  dir: string;
  stage: 'pt' | 'sft';
  seed: number;
  maxLength: number;
  h: ReturnType<typeof hyperparameters>;
  plan: GpuPlan;
  lora?: { rank: number; alpha: number; dropout: number; targets: string[] };
  qlora: boolean;
  packed: boolean;
  hasVal: boolean;
}

/** One optimizer step per micro-batch count, as llmbox's trainer counts them. */
function trainerArguments(c: Common) {
  return {
    output_dir: 'model',
    per_device_train_batch_size: c.h.batchSize,
    gradient_accumulation_steps: c.h.accum,
    learning_rate: c.h.lr,
    max_steps: c.h.totalSteps,
    lr_scheduler_type: c.h.schedule === 'constant' ? 'constant_with_warmup' : c.h.schedule,
    warmup_steps: c.h.warmupSteps,
    weight_decay: c.h.weightDecay,
    max_grad_norm: c.h.maxGradNorm,
    seed: c.seed,
    bf16: true,
    logging_steps: 10,
    save_steps: 500,
    ...(c.plan.zeroStage === 3 ? { deepspeed: 'ds_z3_config.json' } : {}),
  };
}

function writeLlamaFactory(c: Common): { file: string; command: string } {
  const config: Record<string, unknown> = {
    model_name_or_path: c.base,
    stage: c.stage,
    do_train: true,
    finetuning_type: c.lora ? 'lora' : 'full',
    ...(c.lora
      ? {
          lora_rank: c.lora.rank,
          lora_alpha: c.lora.alpha,
          lora_dropout: c.lora.dropout,
          lora_target: c.lora.targets.includes('all-linear') ? 'all' : c.lora.targets.join(','),
        }
      : {}),
    ...(c.qlora ? { quantization_bit: 4 } : {}),
    // The rows are already mixed, tokenized and packed: LLaMA-Factory loads them and skips its own preprocessing.
    tokenized_path: 'tokenized',
    cutoff_len: c.maxLength,
    ...(c.packed ? { neat_packing: true } : {}),
    ...trainerArguments(c),
  };
  checkKeys(config, LLAMAFACTORY_KEYS, 'LLaMA-Factory');
  const file = join(c.dir, 'llamafactory.yaml');
  writeFileSync(file, stringify(config));
  const splits = `{'train': 'data/train.parquet'${c.hasVal ? ", 'validation': 'data/validation.parquet'" : ''}}`;
  const toDisk = `python -c "from datasets import load_dataset; load_dataset('parquet', data_files=${splits}).save_to_disk('tokenized')"`;
  const run =
    c.plan.gpus > 1
      ? `FORCE_TORCHRUN=1 NPROC_PER_NODE=${c.plan.gpus} llamafactory-cli train llamafactory.yaml`
      : 'llamafactory-cli train llamafactory.yaml';
  return { file, command: `${toDisk}\n${run}` };
}

function writeTrl(c: Common): { file: string; command: string } {
  const args: Record<string, unknown> = {
    ...trainerArguments(c),
    max_length: c.maxLength,
    // Rows are packed already: TRL keeps them as they are and restarts positions at each seq_lengths entry.
    packing: false,
    padding_free: true,
    completion_only_loss: true,
    dataset_kwargs: { skip_prepare_dataset: true },
    model_init_kwargs: { torch_dtype: 'bfloat16', attn_implementation: 'flash_attention_2' },
  };
  checkKeys(args, TRL_KEYS, 'TRL');
  const config = {
    model: c.base,
    train_file: 'data/train.parquet',
    validation_file: c.hasVal ? 'data/validation.parquet' : null,
    sft_config: args,
    peft: c.lora
      ? {
          r: c.lora.rank,
          lora_alpha: c.lora.alpha,
          lora_dropout: c.lora.dropout,
          target_modules: c.lora.targets.includes('all-linear') ? 'all-linear' : c.lora.targets,
          task_type: 'CAUSAL_LM',
        }
      : null,
  };
  writeFileSync(join(c.dir, 'trl_config.json'), JSON.stringify(config, null, 2) + '\n');
  const file = join(c.dir, 'train_trl.py');
  writeFileSync(file, TRL_SCRIPT);
  const command =
    c.plan.gpus > 1 ? `accelerate launch --num_processes ${c.plan.gpus} train_trl.py` : 'python train_trl.py';
  return { file, command };
}

const TRL_SCRIPT = `# Trains on the rows llmbox exported (trl_config.json): TRL's SFTTrainer, optionally with a PEFT LoRA.
import json

from datasets import load_dataset
from trl import SFTConfig, SFTTrainer

config = json.load(open("trl_config.json"))
files = {"train": config["train_file"]}
if config["validation_file"]:
    files["validation"] = config["validation_file"]
data = load_dataset("parquet", data_files=files)
peft_config = None
if config["peft"]:
    from peft import LoraConfig

    peft_config = LoraConfig(**config["peft"])
args = SFTConfig(**config["sft_config"])
trainer = SFTTrainer(
    model=config["model"],
    args=args,
    train_dataset=data["train"],
    eval_dataset=data.get("validation"),
    peft_config=peft_config,
)
trainer.train()
trainer.save_model(args.output_dir)
`;
