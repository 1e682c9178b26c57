import * as tf from '@tensorflow/tfjs';
import { mkdirSync } from 'node:fs';
import { LlmboxError } from '../errors.js';
import { embedding } from '../engine/ops.js';
import type { Message } from '../data/records.js';
import { tokenizeRecord } from '../data/tokenize.js';
import type { LlamaModel } from '../models/llama.js';
import type { LoadedModel } from '../models/load.js';
import { DEFAULTS } from '../util/defaults.js';
import { toBatch, type Batch, type TrainingRow } from './batches.js';
import { saveFinal } from './checkpoint.js';
import { addLora, mergeLora } from './lora.js';
import { AdamW, learningRate } from './optim.js';
import { addGradients, applyUpdate, slotGradients, slotSize, slotsOf } from './slots.js';
import { pairOrder, splitPairs, type PairRows } from './preference.js';
import { hyperparameters, type TrainOptions } from './trainer.js';

/**
 * A reward model: the decoder with a scalar head on the final hidden state of each sequence's last
 * real token (transformers' LlamaForSequenceClassification, `score.weight`, num_labels 1).
 */
export function addRewardHead(model: LlamaModel, seed: number): void {
  if (model.params.has('score.weight')) return;
  const H = model.config.hiddenSize;
  // transformers initialises the head as normal(0, initializer_range = 0.02).
  model.params.set('score.weight', tf.randomNormal([H, 1], 0, 0.02, 'float32', seed));
  (model.config as { numLabels: number }).numLabels = 1;
}

/** Each row's reward (right-padded rows; segment 0 is padding). */
export function rowRewards(model: LlamaModel, batch: Batch): tf.Tensor1D {
  const W = model.params.get('score.weight');
  if (!W)
    throw new LlmboxError('this model has no reward head (score.weight)', {
      field: 'score.weight',
      fix: 'train one with llmbox train --stage rm, or load a LlamaForSequenceClassification reward model',
    });
  const T = batch.ids[0].length,
    B = batch.ids.length;
  const last = batch.segments.map((seg, b) => b * T + Math.max(0, seg.filter((x) => x !== 0).length - 1));
  return tf.tidy(() => {
    const hidden = model.forward(batch.ids, { segments: batch.segments });
    const picked = embedding(
      hidden.reshape([B * T, model.config.hiddenSize]) as tf.Tensor2D,
      tf.tensor1d(last, 'int32'),
    );
    return tf.matMul(picked as tf.Tensor2D, W as tf.Tensor2D).reshape([B]) as tf.Tensor1D;
  });
}

/** Rewards of (prompt, response) pairs under the chat template, without gradients. */
export function rewardsOf(
  loaded: LoadedModel,
  items: { prompt: Message[]; response: string }[],
  batchSize = 8,
): number[] {
  const tok = loaded.tokenizer;
  if (!tok) throw new LlmboxError('the reward model has no tokenizer.json', { file: loaded.dir });
  const rows: TrainingRow[] = items.map(({ prompt, response }) => {
    const ex = tokenizeRecord(tok, { kind: 'chat', messages: [...prompt, { role: 'assistant', content: response }] });
    const ids = ex.inputIds.slice(-loaded.model.config.maxPositionEmbeddings);
    return { ids, targets: new Uint8Array(ids.length), segments: ids.map(() => 1) };
  });
  const pad = tok.padTokenId ?? loaded.generation.padTokenId ?? 0;
  const out: number[] = [];
  for (let i = 0; i < rows.length; i += batchSize) {
    const r = rowRewards(loaded.model, toBatch(rows.slice(i, i + batchSize), pad));
    out.push(...r.dataSync());
    r.dispose();
  }
  return out;
}

export interface RewardTrainOptions extends TrainOptions {
  /** A margin the chosen reward must clear (Touvron et al. 2023's margin term). */
  margin?: number;
  onRewardStep?: (m: RewardStep, total: number) => void;
}

export interface RewardStep {
  step: number;
  loss: number;
  accuracy: number;
  margin: number;
  lr: number;
  gradNorm: number;
  seconds: number;
}

export interface RewardEval {
  step: number;
  accuracy: number;
  margin: number;
  loss: number;
}

export interface RewardResult {
  stage: 'rm';
  steps: number;
  metrics: RewardStep[];
  evals: RewardEval[];
  pairs: { train: number; val: number; dropped: number };
  parameters: { total: number; trainable: number };
  output: string | null;
}

/**
 * Trains a reward model on preference pairs with the pairwise (Bradley-Terry) loss
 * -log sigmoid(r_chosen - r_rejected - margin): the head and the decoder (or LoRA adapters on it,
 * merged into the saved model). Held-out pairs give accuracy (chosen scored higher) before and after.
 */
export async function trainReward(loaded: LoadedModel, o: RewardTrainOptions): Promise<RewardResult> {
  if (!loaded.tokenizer) throw new LlmboxError('the model has no tokenizer.json', { file: loaded.dir });
  if (o.qlora)
    throw new LlmboxError('reward models train in float32 or with LoRA, not QLoRA', {
      field: '--qlora',
      fix: 'drop --qlora (LoRA alone works)',
    });
  const seed = o.seed ?? DEFAULTS.train.seed;
  const maxLength = o.maxLength ?? Math.min(512, loaded.model.config.maxPositionEmbeddings);
  const { train, val, dropped } = await splitPairs(loaded, o, maxLength, seed);
  const h = hyperparameters(o, train.length);
  const pad = loaded.tokenizer.padTokenId ?? loaded.generation.padTokenId ?? 0;
  const margin = o.margin ?? 0;

  addRewardHead(loaded.model, seed);
  if (o.lora) addLora(loaded.model, { seed, ...o.lora });
  // What trains: the adapters (or every weight) and the head.
  const slots = [
    ...slotsOf(loaded.model.lora ? loaded.model.adapters : loaded.model.params, ['score.weight']),
    { map: loaded.model.params, name: 'score.weight' },
  ];
  const opt = new AdamW({ weightDecay: h.weightDecay });
  const schedule = {
    lr: h.lr,
    warmupSteps: h.warmupSteps,
    totalSteps: h.totalSteps,
    schedule: h.schedule,
    minLrRatio: h.minLrRatio,
  } as const;
  const pairBatch = (part: PairRows[]) => toBatch([...part.map((p) => p.chosen), ...part.map((p) => p.rejected)], pad);
  const lossOf = (part: PairRows[]) => {
    const r = rowRewards(loaded.model, pairBatch(part));
    const n = part.length;
    const diff = tf.sub(r.slice(0, n), r.slice(n, n));
    return { loss: tf.mean(tf.softplus(tf.neg(tf.sub(diff, margin)))) as tf.Scalar, diff };
  };
  const evaluateVal = (step: number): RewardEval | null => {
    if (!val.length) return null;
    let correct = 0,
      sum = 0,
      loss = 0;
    for (let i = 0; i < val.length; i += h.batchSize) {
      const part = val.slice(i, i + h.batchSize);
      const { d, l } = tf.tidy(() => {
        const x = lossOf(part);
        return { d: x.diff.dataSync(), l: x.loss.dataSync()[0] };
      });
      for (const v of d) {
        sum += v;
        if (v > 0) correct++;
      }
      loss += l * part.length;
    }
    return { step, accuracy: correct / val.length, margin: sum / val.length, loss: loss / val.length };
  };

  const evals: RewardEval[] = [];
  const first = evaluateVal(0);
  if (first) evals.push(first);
  const metrics: RewardStep[] = [];
  const order = pairOrder(train.length, seed);
  let cursor = 0;
  try {
    for (let step = 0; step < h.totalSteps; step++) {
      const t0 = performance.now();
      let acc: tf.Tensor[] | null = null;
      const logged = { loss: 0, correct: 0, margin: 0, n: 0 };
      for (let m = 0; m < h.accum; m++) {
        const part = Array.from({ length: h.batchSize }, () => train[order(cursor++)]);
        const g = slotGradients(slots, () => {
          const x = lossOf(part);
          for (const d of x.diff.dataSync()) {
            logged.margin += d;
            if (d > 0) logged.correct++;
            logged.n++;
          }
          return tf.div(x.loss, h.accum) as tf.Scalar;
        });
        logged.loss += g.value;
        acc = addGradients(acc, g.grads);
      }
      const lr = learningRate(step, schedule);
      const norm = applyUpdate(slots, acc!, opt, lr, h.maxGradNorm);
      const metric: RewardStep = {
        step: step + 1,
        loss: logged.loss,
        accuracy: logged.correct / logged.n,
        margin: logged.margin / logged.n,
        lr,
        gradNorm: norm,
        seconds: (performance.now() - t0) / 1000,
      };
      metrics.push(metric);
      o.onRewardStep?.(metric, h.totalSteps);
      o.onStep?.(
        {
          step: metric.step,
          loss: metric.loss,
          lr,
          gradNorm: norm,
          tokens: 0,
          tokensPerSecond: 0,
          seconds: metric.seconds,
        },
        h.totalSteps,
      );
      if (o.evalEvery && metric.step % o.evalEvery === 0 && metric.step < h.totalSteps) {
        const e = evaluateVal(metric.step);
        if (e) evals.push(e);
      }
    }
  } finally {
    opt.dispose();
  }
  const last = evaluateVal(h.totalSteps);
  if (last) evals.push(last);
  const trainable = slotSize(slots);
  // A LoRA-trained reward model is saved merged: the Hugging Face classifier layout, loadable anywhere.
  if (loaded.model.lora) mergeLora(loaded.model);
  if (o.output) {
    mkdirSync(o.output, { recursive: true });
    saveFinal(o.output, loaded);
  }
  return {
    stage: 'rm',
    steps: h.totalSteps,
    metrics,
    evals,
    pairs: { train: train.length, val: val.length, dropped },
    parameters: { total: loaded.model.numParameters(), trainable },
    output: o.output ?? null,
  };
}
