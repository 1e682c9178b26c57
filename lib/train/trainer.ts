import * as tf from '@tensorflow/tfjs';
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { LlmboxError } from '../errors.js';
import type { LoadedModel } from '../models/load.js';
import { seededRandom } from '../models/sampling.js';
import { shuffled } from '../data/mixture.js';
import { realTokens, toBatch, type Row } from './batches.js';
import { restoreCheckpoint, saveFinal, writeCheckpoint, type TrainerState } from './checkpoint.js';
import { prepareData, type DataOptions, type PreparedData, type Stage } from './data.js';
import { batchLossSum } from './loss.js';
import { addLora, quantizeBase, type LoraOptions } from './lora.js';
import { AdamW, clipByGlobalNorm, learningRate, type Schedule } from './optim.js';

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
}

/** Mean target loss over rows, in batches, without gradients. */
export function evalLoss(lm: LoadedModel, rows: Row[], batchSize: number, pad: number): number {
  let sum = 0, count = 0;
  for (let i = 0; i < rows.length; i += batchSize) {
    const batch = toBatch(rows.slice(i, i + batchSize), pad);
    if (!batch.targetCount) continue;
    const s = batchLossSum(lm.model, batch);
    sum += s.dataSync()[0];
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
export async function train(lm: LoadedModel, o: TrainOptions): Promise<TrainResult> {
  const { data, ...settings } = await trainingData(lm, o);
  try {
    return await trainOn(lm, o, data, settings);
  } finally {
    data.close();
  }
}

/** The rows a training run reads (mixed, tokenized, packed), with the settings they were made under. */
export async function trainingData(lm: LoadedModel, o: TrainOptions): Promise<{ data: PreparedData; stage: Stage; seed: number; maxLength: number }> {
  const tok = lm.tokenizer;
  if (!tok) throw new LlmboxError('the model has no tokenizer.json, so text cannot be tokenized for training', { file: lm.dir });
  const cfg = lm.model.config;
  const maxLength = o.maxLength ?? Math.min(512, cfg.maxPositionEmbeddings);
  if (maxLength > cfg.maxPositionEmbeddings) throw new LlmboxError(`--max-length ${maxLength} exceeds the model's ${cfg.maxPositionEmbeddings} positions`, { field: '--max-length' });
  if (o.qlora && !o.lora) throw new LlmboxError('QLoRA trains LoRA adapters over a 4-bit base', { field: '--qlora', fix: 'add --lora-rank' });
  const stage: Stage = o.stage ?? 'sft';
  const seed = o.seed ?? 42;
  return { data: await prepareData(tok, { ...o, stage, maxLength, packing: o.packing ?? false, seed }), stage, seed, maxLength };
}

/** Every optimisation setting with its default resolved (one place for the defaults: training and export read them). */
export function hyperparameters(o: TrainOptions, trainRows: number) {
  const batchSize = o.batchSize ?? 8, accum = o.gradAccum ?? 1;
  const totalSteps = o.maxSteps ?? Math.max(1, Math.ceil(((o.epochs ?? 1) * trainRows) / (batchSize * accum)));
  const warmupSteps = o.warmup === undefined ? 0 : o.warmup < 1 ? Math.round(o.warmup * totalSteps) : Math.round(o.warmup);
  return {
    batchSize, accum, totalSteps, warmupSteps,
    lr: o.lr ?? 1e-4, schedule: o.schedule ?? ('cosine' as Schedule), minLrRatio: o.minLrRatio ?? 0,
    weightDecay: o.weightDecay ?? 0, maxGradNorm: o.maxGradNorm ?? 1,
  };
}

async function trainOn(lm: LoadedModel, o: TrainOptions, data: PreparedData, d: { stage: Stage; seed: number; maxLength: number }): Promise<TrainResult> {
  const { stage, seed, maxLength } = d;
  const tok = lm.tokenizer!;
  if (!data.train.length) throw new LlmboxError('no training rows after tokenization', { field: '--dataset' });
  const h = hyperparameters(o, data.train.length);
  const { batchSize, accum, totalSteps } = h;
  const schedule = { lr: h.lr, warmupSteps: h.warmupSteps, totalSteps, schedule: h.schedule, minLrRatio: h.minLrRatio } as const;
  const pad = tok.padTokenId ?? lm.generation.padTokenId ?? 0;

  const quantization = o.qlora ? quantizeBase(lm.model) : null;
  if (o.lora) addLora(lm.model, { seed, ...o.lora });
  const target = lm.model.lora ? lm.model.adapters : lm.model.params;
  const names = [...target.keys()];
  const trainable = names.reduce((n, k) => n + target.get(k)!.size, 0);
  const opt = new AdamW({ weightDecay: h.weightDecay });

  const runKey = createHash('sha256')
    .update(JSON.stringify({ datasets: o.datasets, ratio: o.datasetRatio, mix: o.mixStrategy, stage, maxLength, packing: o.packing ?? false, batchSize, accum, totalSteps, schedule, seed, lora: o.lora ?? null, qlora: !!o.qlora, valSize: o.valSize, template: o.template ?? null, trainOnPrompt: !!o.trainOnPrompt }))
    .digest('hex')
    .slice(0, 16);
  let state: TrainerState = { step: 0, losses: [], evalLosses: [], runKey, log: [] };
  let resumedFrom: number | null = null;
  if (o.output) mkdirSync(o.output, { recursive: true });
  if (o.resume && o.output) {
    const restored = restoreCheckpoint(o.output, lm, opt, runKey);
    if (restored) {
      state = restored;
      resumedFrom = restored.step;
    }
  }

  // Rows in epoch order: epoch e is the rows shuffled with seed + e, so any step's rows are known.
  const epochs = new Map<number, number[]>();
  const rowAt = (i: number) => {
    const e = Math.floor(i / data.train.length);
    if (!epochs.has(e)) {
      epochs.clear();
      epochs.set(e, shuffled(Array.from({ length: data.train.length }, (_, k) => k), seededRandom(seed * 1000 + e)));
    }
    return data.train.get(epochs.get(e)![i % data.train.length]);
  };

  const metrics: StepMetrics[] = state.log as unknown as StepMetrics[];
  let checkpoint: string | null = null;
  const evalEvery = o.evalEvery ?? 0, saveEvery = o.saveEvery ?? 0;
  const runEval = (step: number) => {
    if (!data.val.length) return;
    lm.model.dropoutSeed = null;
    const loss = evalLoss(lm, data.val, batchSize, pad);
    state.evalLosses.push({ step, loss });
    o.onEval?.({ step, loss });
  };
  if (state.step === 0 && data.val.length && evalEvery > 0) runEval(0);

  try {
    for (let step = state.step; step < totalSteps; step++) {
      const t0 = performance.now();
      const micro = Array.from({ length: accum }, (_, k) => toBatch(Array.from({ length: batchSize }, (_, j) => rowAt((step * accum + k) * batchSize + j)), pad));
      const targets = micro.reduce((n, b) => n + b.targetCount, 0);
      const tokens = micro.reduce((n, b) => n + realTokens(b.segments), 0);
      let lossSum = 0;
      let acc: Map<string, tf.Tensor> | null = null;
      const originals = names.map((n) => target.get(n)!);
      for (const [k, batch] of micro.entries()) {
        if (!batch.targetCount) continue;
        lm.model.dropoutSeed = seed * 7919 + (step * accum + k) * 131;
        const { value, grads } = tf.valueAndGrads((...ps: tf.Tensor[]) => {
          names.forEach((n, i) => target.set(n, ps[i]));
          return tf.div(batchLossSum(lm.model, batch), targets) as tf.Scalar;
        })(originals);
        names.forEach((n, i) => target.set(n, originals[i]));
        lossSum += value.dataSync()[0];
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
      lm.model.dropoutSeed = null;
      if (!acc) throw new LlmboxError(`step ${step + 1} has no target tokens`, { fix: 'check the data: every example needs a reply to learn' });
      const { grads, norm } = clipByGlobalNorm(acc, h.maxGradNorm);
      const lr = learningRate(step, schedule);
      const params = new Map(names.map((n) => [n, target.get(n)!]));
      const updated = opt.apply(params, grads, lr);
      for (const n of names) {
        target.get(n)!.dispose();
        target.set(n, updated.get(n)!);
      }
      tf.dispose([...grads.values()]);
      const seconds = (performance.now() - t0) / 1000;
      const m: StepMetrics = { step: step + 1, loss: lossSum, lr, gradNorm: norm, tokens, tokensPerSecond: tokens / seconds, seconds };
      metrics.push(m);
      state.losses.push(lossSum);
      state.step = step + 1;
      o.onStep?.(m, totalSteps);
      const last = step + 1 === totalSteps;
      if ((evalEvery > 0 && (step + 1) % evalEvery === 0) || last) runEval(step + 1);
      if (o.output && ((saveEvery > 0 && (step + 1) % saveEvery === 0) || last)) {
        state.log = metrics as unknown as Record<string, number>[];
        checkpoint = writeCheckpoint(o.output, lm, opt, state, o.saveTotalLimit ?? 2);
      }
    }
    if (o.output) saveFinal(o.output, lm);
  } finally {
    lm.model.dropoutSeed = null;
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
    parameters: { total: lm.model.numParameters(), trainable },
    quantization,
  };
}
