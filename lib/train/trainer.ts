import * as tf from '@tensorflow/tfjs';
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { LlmboxError } from '../errors.js';
import { readableOnHost } from '../engine/webgpu.js';
import type { LoadedModel } from '../models/load.js';
import { seededRandom } from '../util/random.js';
import { shuffled } from '../data/mixture.js';
import { realTokens, toBatch, type Batch, type TrainingRow } from './batches.js';
import { restoreCheckpoint, saveFinal, writeCheckpoint, type TrainerState } from './checkpoint.js';
import { prepareData, type DataOptions, type PreparedData, type Stage } from './data.js';
import { batchLossSum } from './loss.js';
import { addLora, type LoraOptions } from './lora.js';
import { AdamW, clipByGlobalNorm, learningRate, type Schedule } from './optim.js';
import { DEFAULTS } from '../util/defaults.js';

export interface TrainOptions extends Omit<DataOptions, 'stage' | 'maxLength'> {
  stage?: Stage;
  maxLength?: number;
  /** Rows per micro-batch. */
  batchSize?: number;
  /** Micro-batches per optimizer step. */
  gradAccum?: number;
  /** Optimizer steps (default: `epochs` passes over the training rows). */
  maxSteps?: number;
  epochs?: number;
  lr?: number;
  schedule?: Schedule;
  /** Warmup steps (>= 1), or a fraction of the steps (< 1). */
  warmup?: number;
  minLrRatio?: number;
  weightDecay?: number;
  /** Gradient clipping by global norm (0: off). */
  maxGradNorm?: number;
  lora?: LoraOptions;
  /** QLoRA: hold the frozen base's linear layers as NF4 (double-quantized); needs `lora`. */
  qlora?: boolean;
  /** Evaluation loss every N steps (and at the end); 0: only at the end. */
  evalEvery?: number;
  /** Checkpoint every N steps (and at the end) when `output` is set. */
  saveEvery?: number;
  /** Checkpoints kept (the newest ones). */
  saveTotalLimit?: number;
  output?: string;
  /** Continue from the newest checkpoint in `output`. */
  resume?: boolean;
  onStep?: (m: StepMetrics, total: number) => void;
  onEval?: (e: { step: number; loss: number }) => void;
}

export interface StepMetrics {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  /** Real (non-padding) tokens in the step. */
  tokens: number;
  tokensPerSecond: number;
  seconds: number;
}

/** Whether a step (1-based) is on an every-N schedule (0: never) or is the run's last: when to evaluate and save. */
export const due = (step: number, every: number | undefined, total: number): boolean =>
  ((every ?? 0) > 0 && step % every! === 0) || step === total;

/** A stage's step record as the trainer's StepMetrics (what progress bars and loss charts read). */
export const stepMetrics = (m: Omit<StepMetrics, 'tokensPerSecond'>): StepMetrics => ({
  step: m.step,
  loss: m.loss,
  lr: m.lr,
  gradNorm: m.gradNorm,
  tokens: m.tokens,
  tokensPerSecond: m.tokens / m.seconds,
  seconds: m.seconds,
});

export interface TrainResult {
  stage: Stage;
  steps: number;
  losses: number[];
  evalLosses: { step: number; loss: number }[];
  evalLoss: number | null;
  metrics: StepMetrics[];
  checkpoint: string | null;
  resumedFrom: number | null;
  data: Omit<PreparedData, 'train' | 'val' | 'close'> & { trainRows: number; valRows: number };
  parameters: { total: number; trainable: number };
  /** QLoRA: bytes of the base linear weights in float32 and as NF4. */
  quantization: { float32Bytes: number; nf4Bytes: number } | null;
  /** Bytes of the model state while training (the model-state term of the LLMBox paper's Eq. 1; activations are not counted): the base weights as held, the adapters, the float32 gradients and AdamW's two moments. */
  memory: { weights: number; adapters: number; gradients: number; optimizer: number };
}

/** Mean target loss over rows, in batches, without gradients. */
export async function evalLoss(
  loaded: LoadedModel,
  rows: TrainingRow[],
  batchSize: number,
  pad: number,
): Promise<number> {
  let sum = 0,
    count = 0;
  for (let i = 0; i < rows.length; i += batchSize) {
    const batch = toBatch(rows.slice(i, i + batchSize), pad);
    if (!batch.targetCount) continue;
    const s = batchLossSum(loaded.model, batch);
    sum += (await s.data())[0];
    s.dispose();
    count += batch.targetCount;
  }
  return count ? sum / count : NaN;
}

/**
 * Trains a loaded model in place: causal-LM pre-training (pt) or supervised fine-tuning (sft), full or
 * LoRA, with AdamW, warmup and decay, gradient accumulation and clipping, evaluation loss, atomic
 * checkpoints and exact resume (the data order is a function of the seed and the step).
 */
export async function train(loaded: LoadedModel, o: TrainOptions): Promise<TrainResult> {
  prepareFullTraining(loaded, o.lora);
  const { data, ...settings } = await trainingData(loaded, o);
  try {
    return await trainOn(loaded, o, data, settings);
  } finally {
    data.close();
  }
}

/**
 * Full training needs every weight as a float32 parameter: f16/bf16 matrices held as stored are widened
 * (exactly); quantized ones are refused, since training would silently leave them as they are.
 */
export function prepareFullTraining(loaded: LoadedModel, lora: LoraOptions | undefined): void {
  if (lora) return;
  loaded.model.widenFloatMatrices();
  if (!loaded.model.packed.size && !loaded.model.quantized.size) return;
  throw new LlmboxError(
    'weights held in a quantized type (a q8_0/q4_0 GGUF file, --load-in-8bit or --load-in-4bit) train only through LoRA',
    {
      field: '--lora-rank',
      fix: 'add --lora-rank R to train adapters on the quantized base, or load the float model',
    },
  );
}

/** The rows a training run reads (mixed, tokenized, packed), with the settings they were made under. */
export async function trainingData(
  loaded: LoadedModel,
  o: TrainOptions,
): Promise<{ data: PreparedData; stage: Stage; seed: number; maxLength: number }> {
  const tok = loaded.tokenizer;
  if (!tok)
    throw new LlmboxError('the model has no tokenizer.json, so text cannot be tokenized for training', {
      file: loaded.dir,
    });
  const cfg = loaded.model.config;
  const maxLength = o.maxLength ?? Math.min(512, cfg.maxPositionEmbeddings);
  if (maxLength > cfg.maxPositionEmbeddings)
    throw new LlmboxError(`--max-length ${maxLength} exceeds the model's ${cfg.maxPositionEmbeddings} positions`, {
      field: '--max-length',
    });
  if (o.qlora && !o.lora)
    throw new LlmboxError('QLoRA trains LoRA adapters over a 4-bit base', { field: '--qlora', fix: 'add --lora-rank' });
  const stage: Stage = o.stage ?? 'sft';
  const seed = o.seed ?? DEFAULTS.train.seed;
  return {
    data: await prepareData(tok, { ...o, stage, maxLength, packing: o.packing ?? false, seed }),
    stage,
    seed,
    maxLength,
  };
}

/** Every optimisation setting with its default resolved (one place for the defaults: training and export read them). */
export function hyperparameters(o: TrainOptions, trainRows: number) {
  const batchSize = o.batchSize ?? DEFAULTS.train.batchSize,
    accum = o.gradAccum ?? DEFAULTS.train.gradAccum;
  const totalSteps =
    o.maxSteps ?? Math.max(1, Math.ceil(((o.epochs ?? DEFAULTS.train.epochs) * trainRows) / (batchSize * accum)));
  const warmupSteps =
    o.warmup === undefined ? 0 : o.warmup < 1 ? Math.round(o.warmup * totalSteps) : Math.round(o.warmup);
  return {
    batchSize,
    accum,
    totalSteps,
    warmupSteps,
    lr: o.lr ?? DEFAULTS.train.lr,
    schedule: o.schedule ?? DEFAULTS.train.schedule,
    minLrRatio: o.minLrRatio ?? 0,
    weightDecay: o.weightDecay ?? DEFAULTS.train.weightDecay,
    maxGradNorm: o.maxGradNorm ?? DEFAULTS.train.maxGradNorm,
  };
}

/** What a checkpoint must match to be resumed: the data, the shape of the run and its seeds. */
function runFingerprint(
  o: TrainOptions,
  d: { stage: Stage; maxLength: number; seed: number },
  h: { batchSize: number; accum: number; totalSteps: number },
  schedule: unknown,
): string {
  const key = {
    datasets: o.datasets,
    ratio: o.datasetRatio,
    mix: o.mixStrategy,
    stage: d.stage,
    maxLength: d.maxLength,
    packing: o.packing ?? false,
    batchSize: h.batchSize,
    accum: h.accum,
    totalSteps: h.totalSteps,
    schedule,
    seed: d.seed,
    lora: o.lora ?? null,
    qlora: !!o.qlora,
    valSize: o.valSize,
    template: o.template ?? null,
    trainOnPrompt: !!o.trainOnPrompt,
  };
  return createHash('sha256').update(JSON.stringify(key)).digest('hex').slice(0, 16);
}

/** The i-th row of training in epoch order: epoch e is the rows shuffled with seed + e, so any step's rows are known (resume). */
function epochRows(rows: PreparedData['train'], seed: number): (i: number) => TrainingRow {
  const epochs = new Map<number, number[]>();
  return (i) => {
    const e = Math.floor(i / rows.length);
    if (!epochs.has(e)) {
      epochs.clear();
      epochs.set(
        e,
        shuffled(
          Array.from({ length: rows.length }, (_, k) => k),
          seededRandom(seed * 1000 + e),
        ),
      );
    }
    return rows.get(epochs.get(e)![i % rows.length]);
  };
}

/**
 * The loss and gradients of one optimizer step, summed over its micro-batches, each normalised by the
 * step's target-token count (so accumulation equals one large batch). Null gradients: no targets.
 */
async function accumulatedGradients(
  model: LoadedModel['model'],
  target: Map<string, tf.Tensor>,
  names: string[],
  micro: Batch[],
  dropoutSeed: number,
): Promise<{ loss: number; grads: Map<string, tf.Tensor> | null }> {
  const targets = micro.reduce((n, b) => n + b.targetCount, 0);
  const originals = names.map((n) => target.get(n)!);
  let loss = 0;
  let acc: Map<string, tf.Tensor> | null = null;
  try {
    for (const [k, batch] of micro.entries()) {
      if (!batch.targetCount) continue;
      model.dropoutSeed = dropoutSeed + k * 131;
      const { value, grads } = tf.valueAndGrads((...ps: tf.Tensor[]) => {
        names.forEach((n, i) => target.set(n, ps[i]));
        return tf.div(batchLossSum(model, batch), targets) as tf.Scalar;
      })(originals);
      names.forEach((n, i) => target.set(n, originals[i]));
      loss += (await value.data())[0];
      value.dispose();
      if (!acc) acc = new Map(names.map((n, i) => [n, grads[i]]));
      else {
        for (const [i, n] of names.entries()) {
          const sum = tf.add(acc.get(n)!, grads[i]);
          acc.get(n)!.dispose();
          grads[i].dispose();
          acc.set(n, sum);
        }
      }
    }
  } finally {
    model.dropoutSeed = null;
  }
  return { loss, grads: acc };
}

/**
 * One optimizer step, in place: gradients summed over the step's micro-batches, clipped to the
 * global norm, then AdamW at the scheduled learning rate.
 */
async function optimizerStep(
  model: LoadedModel['model'],
  t: { target: Map<string, tf.Tensor>; names: string[]; opt: AdamW },
  micro: Batch[],
  s: { step: number; dropoutSeed: number; maxGradNorm: number; schedule: Parameters<typeof learningRate>[1] },
): Promise<StepMetrics> {
  const t0 = performance.now();
  const tokens = micro.reduce((n, b) => n + realTokens(b.segments), 0);
  const { loss, grads: summed } = await accumulatedGradients(model, t.target, t.names, micro, s.dropoutSeed);
  if (!summed)
    throw new LlmboxError(`step ${s.step + 1} has no target tokens`, {
      fix: 'check the data: every example needs a reply to learn',
    });
  const { grads, norm } = await clipByGlobalNorm(summed, s.maxGradNorm);
  const lr = learningRate(s.step, s.schedule);
  const updated = t.opt.apply(new Map(t.names.map((n) => [n, t.target.get(n)!])), grads, lr);
  for (const n of t.names) {
    t.target.get(n)!.dispose();
    t.target.set(n, updated.get(n)!);
  }
  tf.dispose([...grads.values()]);
  const seconds = (performance.now() - t0) / 1000;
  return { step: s.step + 1, loss, lr, gradNorm: norm, tokens, tokensPerSecond: tokens / seconds, seconds };
}

async function trainOn(
  loaded: LoadedModel,
  o: TrainOptions,
  data: PreparedData,
  d: { stage: Stage; seed: number; maxLength: number },
): Promise<TrainResult> {
  const { stage, seed, maxLength } = d;
  const tok = loaded.tokenizer!;
  if (!data.train.length) throw new LlmboxError('no training rows after tokenization', { field: '--dataset' });
  const h = hyperparameters(o, data.train.length);
  const { batchSize, accum, totalSteps } = h;
  const schedule = {
    lr: h.lr,
    warmupSteps: h.warmupSteps,
    totalSteps,
    schedule: h.schedule,
    minLrRatio: h.minLrRatio,
  } as const;
  const pad = tok.padTokenId ?? loaded.generation.padTokenId ?? 0;

  if (o.qlora) await readableOnHost(loaded.model.params.values());
  const quantization = o.qlora ? loaded.model.holdLinearsAsNF4() : null;
  if (o.lora) addLora(loaded.model, { seed, ...o.lora });
  const target = loaded.model.lora ? loaded.model.adapters : loaded.model.params;
  const names = [...target.keys()];
  const trainable = names.reduce((n, k) => n + target.get(k)!.size, 0);
  const opt = new AdamW({ weightDecay: h.weightDecay });

  const runKey = runFingerprint(o, { stage, maxLength, seed }, h, schedule);
  let state: TrainerState = { step: 0, losses: [], evalLosses: [], runKey, log: [] };
  let resumedFrom: number | null = null;
  if (o.output) mkdirSync(o.output, { recursive: true });
  if (o.resume && o.output) {
    const restored = restoreCheckpoint(o.output, loaded, opt, runKey);
    if (restored) {
      state = restored;
      resumedFrom = restored.step;
    }
  }

  const rowAt = epochRows(data.train, seed);

  const metrics: StepMetrics[] = state.log as unknown as StepMetrics[];
  let checkpoint: string | null = null;
  const evalEvery = o.evalEvery ?? 0,
    saveEvery = o.saveEvery ?? 0;
  const runEval = async (step: number) => {
    if (!data.val.length) return;
    loaded.model.dropoutSeed = null;
    const loss = await evalLoss(loaded, data.val, batchSize, pad);
    state.evalLosses.push({ step, loss });
    o.onEval?.({ step, loss });
  };
  if (state.step === 0 && data.val.length && evalEvery > 0) await runEval(0);

  try {
    for (let step = state.step; step < totalSteps; step++) {
      const micro = Array.from({ length: accum }, (_, k) =>
        toBatch(
          Array.from({ length: batchSize }, (_, j) => rowAt((step * accum + k) * batchSize + j)),
          pad,
        ),
      );
      const m = await optimizerStep(loaded.model, { target, names, opt }, micro, {
        step,
        dropoutSeed: seed * 7919 + step * accum * 131,
        maxGradNorm: h.maxGradNorm,
        schedule,
      });
      metrics.push(m);
      state.losses.push(m.loss);
      state.step = step + 1;
      o.onStep?.(m, totalSteps);
      if (due(step + 1, evalEvery, totalSteps)) await runEval(step + 1);
      if (o.output && due(step + 1, saveEvery, totalSteps)) {
        state.log = metrics as unknown as Record<string, number>[];
        checkpoint = await writeCheckpoint(o.output, loaded, opt, state, o.saveTotalLimit ?? 2);
      }
    }
    if (o.output) await saveFinal(o.output, loaded);
  } finally {
    loaded.model.dropoutSeed = null;
    opt.dispose();
  }
  const { train: trainRows, val: valRows, close: _close, ...report } = data;
  return {
    stage,
    steps: state.step,
    losses: state.losses,
    evalLosses: state.evalLosses,
    evalLoss: state.evalLosses.at(-1)?.loss ?? null,
    metrics,
    checkpoint: checkpoint ?? (o.output ? join(o.output, `checkpoint-${state.step}`) : null),
    resumedFrom,
    data: { ...report, trainRows: trainRows.length, valRows: valRows.length },
    parameters: { total: loaded.model.numParameters(), trainable },
    quantization,
    memory: {
      weights: loaded.model.weightBytes(),
      adapters: loaded.model.lora ? trainable * 4 : 0,
      gradients: trainable * 4,
      optimizer: trainable * 8,
    },
  };
}
