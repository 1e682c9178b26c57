import * as tf from '@tensorflow/tfjs';
import { LlmboxError } from '../errors.js';
import { embedding, pickEntries, takeData } from '../engine/ops.js';
import type { Message } from '../data/records.js';
import { tokenizeRecord } from '../data/tokenize.js';
import type { LlamaModel } from '../models/llama.js';
import type { LoadedModel } from '../models/load.js';
import { DEFAULTS } from '../util/defaults.js';
import { segmentsOf, toBatch, type Batch } from './batches.js';
import { saveFinal, StageCheckpoints } from './checkpoint.js';
import { addLora, mergeLora } from './lora.js';
import { AdamW, learningRate } from './optim.js';
import { addGradients, applyUpdate, slotGradients, slotSize, slotsOf } from './slots.js';
import { pairBatch, pairOrder, pairTokens, replyRow, splitPairs, type PairRows } from './pairs.js';
import { due, hyperparameters, prepareFullTraining, stepMetrics, type TrainOptions } from './trainer.js';

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

/** Each segment's reward, read at its last token; segments in reading order (segmentsOf: rows, or the sequences packed in them). */
export function segmentRewards(model: LlamaModel, batch: Batch): tf.Tensor1D {
  const W = model.params.get('score.weight');
  if (!W)
    throw new LlmboxError('this model has no reward head (score.weight)', {
      field: 'score.weight',
      fix: 'train one with llmbox train --stage rm, or load a LlamaForSequenceClassification reward model',
    });
  const T = batch.ids[0].length,
    B = batch.ids.length;
  const last = segmentsOf(batch.segments).map((s) => s.last);
  return tf.tidy(() => {
    const hidden = model.forward(batch.ids, { segments: batch.segments });
    const picked = embedding(
      hidden.reshape([B * T, model.config.hiddenSize]) as tf.Tensor2D,
      tf.tensor1d(last, 'int32'),
    );
    return tf.matMul(picked as tf.Tensor2D, W as tf.Tensor2D).reshape([last.length]) as tf.Tensor1D;
  });
}

/** The row length reward models train and score at unless told: 512 tokens, or the model's context if shorter. */
export const rewardLength = (loaded: LoadedModel, maxLength?: number) =>
  maxLength ?? Math.min(512, loaded.model.config.maxPositionEmbeddings);

/**
 * Rewards of (prompt, response) pairs under the chat template, without gradients. Each sequence is
 * laid out as training lays out a side of a pair (replyRow: BOS, the prompt's end, the reply), so an
 * over-long conversation is scored as the model saw such rows in training.
 */
export async function rewardsOf(
  loaded: LoadedModel,
  items: { prompt: Message[]; response: string }[],
  o: { batchSize?: number; maxLength?: number; template?: TrainOptions['template'] } = {},
): Promise<number[]> {
  const tok = loaded.tokenizer;
  if (!tok) throw new LlmboxError('the reward model has no tokenizer.json', { file: loaded.dir });
  const maxLength = rewardLength(loaded, o.maxLength),
    batchSize = o.batchSize ?? 8;
  const rows = items.map(({ prompt, response }, i) => {
    const ex = tokenizeRecord(
      tok,
      { kind: 'chat', messages: [...prompt, { role: 'assistant', content: response }] },
      { template: o.template },
    );
    const row = replyRow(ex, maxLength, tok.bosTokenId);
    if (!row)
      throw new LlmboxError(`item ${i}: the chat template leaves no reply token to score`, {
        field: 'response',
        fix: 'give a non-empty response, or a template that renders the assistant turn',
      });
    return row;
  });
  const pad = tok.padTokenId ?? loaded.generation.padTokenId ?? 0;
  const out: number[] = [];
  for (let i = 0; i < rows.length; i += batchSize) {
    const [r] = await takeData([segmentRewards(loaded.model, toBatch(rows.slice(i, i + batchSize), pad))]);
    out.push(...r);
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
  /** Tokens of the step's pairs (both sides, every micro-batch). */
  tokens: number;
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
  checkpoint: string | null;
  /** The step a resumed run continued from. */
  resumedFrom: number | null;
}

/**
 * Trains a reward model on preference pairs with the pairwise (Bradley-Terry) loss
 * -log sigmoid(r_chosen - r_rejected - margin): the head and the decoder (or LoRA adapters on it,
 * merged into the saved model). Held-out pairs give accuracy (chosen scored higher) before and after.
 */
export async function trainReward(loaded: LoadedModel, o: RewardTrainOptions): Promise<RewardResult> {
  prepareFullTraining(loaded, o.lora);
  if (!loaded.tokenizer) throw new LlmboxError('the model has no tokenizer.json', { file: loaded.dir });
  if (o.qlora)
    throw new LlmboxError('reward models train in float32 or with LoRA, not QLoRA', {
      field: '--qlora',
      fix: 'drop --qlora (LoRA alone works)',
    });
  const seed = o.seed ?? DEFAULTS.train.seed;
  const maxLength = rewardLength(loaded, o.maxLength);
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
  const packTo = o.packing ? maxLength : undefined;
  const lossOf = (part: PairRows[]) => {
    const b = pairBatch(part, pad, packTo);
    const r = segmentRewards(loaded.model, b.batch);
    const diff = tf.sub(pickEntries(r, b.chosen), pickEntries(r, b.rejected));
    return { loss: tf.mean(tf.softplus(tf.neg(tf.sub(diff, margin)))) as tf.Scalar, diff };
  };
  const evaluateVal = async (step: number): Promise<RewardEval | null> => {
    if (!val.length) return null;
    let correct = 0,
      sum = 0,
      loss = 0;
    for (let i = 0; i < val.length; i += h.batchSize) {
      const part = val.slice(i, i + h.batchSize);
      const [d, l] = await takeData(
        tf.tidy(() => {
          const x = lossOf(part);
          return [x.diff, x.loss];
        }),
      );
      for (const v of d) {
        sum += v;
        if (v > 0) correct++;
      }
      loss += l[0] * part.length;
    }
    return { step, accuracy: correct / val.length, margin: sum / val.length, loss: loss / val.length };
  };

  // A resumed run continues from the newest checkpoint: decoder (or adapter), head, optimizer, logs.
  const run = new StageCheckpoints<RewardStep, RewardEval>(
    o,
    loaded,
    opt,
    {
      stage: 'rm',
      datasets: o.datasets,
      maxLength,
      seed,
      h,
      margin,
      lora: o.lora ?? null,
      valSize: o.valSize ?? null,
      template: o.template ?? null,
      packing: !!o.packing,
    },
    ['score.weight'],
  );
  const { metrics, evals, startStep } = run;
  if (!run.resumed) {
    const first = await evaluateVal(0);
    if (first) evals.push(first);
  }
  const order = pairOrder(train.length, seed);
  let cursor = startStep * h.accum * h.batchSize;
  try {
    for (let step = startStep; step < h.totalSteps; step++) {
      const t0 = performance.now();
      let tokens = 0;
      let acc: tf.Tensor[] | null = null;
      const logged = { loss: 0, correct: 0, margin: 0, n: 0 };
      for (let m = 0; m < h.accum; m++) {
        const part = Array.from({ length: h.batchSize }, () => train[order(cursor++)]);
        tokens += pairTokens(part);
        let diff: tf.Tensor[] = [];
        const g = await slotGradients(slots, () => {
          const x = lossOf(part);
          diff = [tf.keep(x.diff)];
          return tf.div(x.loss, h.accum) as tf.Scalar;
        });
        for (const d of (await takeData(diff))[0]) {
          logged.margin += d;
          if (d > 0) logged.correct++;
          logged.n++;
        }
        logged.loss += g.value;
        acc = addGradients(acc, g.grads);
      }
      const lr = learningRate(step, schedule);
      const norm = await applyUpdate(slots, acc!, opt, lr, h.maxGradNorm);
      const metric: RewardStep = {
        step: step + 1,
        loss: logged.loss,
        accuracy: logged.correct / logged.n,
        margin: logged.margin / logged.n,
        lr,
        gradNorm: norm,
        tokens,
        seconds: (performance.now() - t0) / 1000,
      };
      metrics.push(metric);
      o.onRewardStep?.(metric, h.totalSteps);
      o.onStep?.(stepMetrics(metric), h.totalSteps);
      if (due(metric.step, o.evalEvery, h.totalSteps)) {
        const e = await evaluateVal(metric.step);
        if (e) evals.push(e);
      }
      if (o.output && due(metric.step, o.saveEvery, h.totalSteps)) await run.save(metric.step);
    }
  } finally {
    opt.dispose();
  }
  const trainable = slotSize(slots);
  // A LoRA-trained reward model is saved merged: the Hugging Face classifier layout, loadable anywhere.
  if (loaded.model.lora) mergeLora(loaded.model);
  if (o.output) await saveFinal(o.output, loaded);
  return {
    stage: 'rm',
    steps: h.totalSteps,
    checkpoint: run.checkpoint,
    resumedFrom: run.resumed ? startStep : null,
    metrics,
    evals,
    pairs: { train: train.length, val: val.length, dropped },
    parameters: { total: loaded.model.numParameters(), trainable },
    output: o.output ?? null,
  };
}
