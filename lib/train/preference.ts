import * as tf from '@tensorflow/tfjs';
import { LlmboxError } from '../errors.js';
import { pickEntries, takeData } from '../engine/ops.js';
import { readableOnHost } from '../engine/webgpu.js';
import type { LoadedModel } from '../models/load.js';
import { DEFAULTS } from '../util/defaults.js';
import type { TrainingRow } from './batches.js';
import { saveFinal, StageCheckpoints } from './checkpoint.js';
import { segmentLogprobSums } from './loss.js';
import { pairBatch, pairOrder, pairTokens, splitPairs, type PairRows } from './pairs.js';
import { addLora, withAdapterOff } from './lora.js';
import { AdamW, learningRate } from './optim.js';
import { addGradients, applyUpdate, slotGradients, slotSize, slotsOf } from './slots.js';
import { preferenceLoss, referenceFree, type PreferenceSettings } from './preference-loss.js';
import { due, hyperparameters, prepareFullTraining, stepMetrics, type TrainOptions } from './trainer.js';

export interface PreferenceTrainOptions extends TrainOptions {
  /** Each step's loss, rewards, margin and accuracy (live charts). */
  onPreferenceStep?: (m: PreferenceStep, total: number) => void;
  preference?: Partial<PreferenceSettings> & {
    /** Reference log-probabilities computed once before training (the only choice for full fine-tuning; LoRA switches its adapter off instead, no second copy either way). */
    precomputeReference?: boolean;
  };
}

export interface PreferenceStep {
  step: number;
  loss: number;
  chosenReward: number;
  rejectedReward: number;
  margin: number;
  accuracy: number;
  lr: number;
  gradNorm: number;
  /** Tokens of the step's pairs (both sides, every micro-batch). */
  tokens: number;
  seconds: number;
}

export interface PreferenceEval {
  step: number;
  accuracy: number;
  margin: number;
  loss: number;
}

export interface PreferenceResult {
  stage: 'dpo';
  settings: PreferenceSettings;
  reference: 'adapter off' | 'precomputed' | 'none';
  steps: number;
  metrics: PreferenceStep[];
  evals: PreferenceEval[];
  pairs: { train: number; val: number; dropped: number };
  parameters: { total: number; trainable: number };
  checkpoint: string | null;
  /** The step a resumed run continued from. */
  resumedFrom: number | null;
}

const targetsOf = (r: TrainingRow) => {
  let n = 0;
  for (let t = 0; t + 1 < r.ids.length; t++) if (r.targets[t + 1] === 1) n++;
  return n;
};

/** Pairs' summed response log-probabilities (chosen, rejected): a tensor of the batch's segments and each side's index in it. */
function pairLogps(loaded: LoadedModel, part: PairRows[], pad: number, packTo?: number) {
  const { batch, chosen, rejected } = pairBatch(part, pad, packTo);
  return { lp: segmentLogprobSums(loaded.model, batch), chosen, rejected };
}

/** Summed response log-probabilities of pairs, without gradients, in batches laid out as training lays them out. */
async function logpsOf(
  loaded: LoadedModel,
  pairs: PairRows[],
  batchSize: number,
  pad: number,
  packTo?: number,
): Promise<{ chosen: number[]; rejected: number[] }> {
  const chosen: number[] = [],
    rejected: number[] = [];
  for (let i = 0; i < pairs.length; i += batchSize) {
    const r = pairLogps(loaded, pairs.slice(i, i + batchSize), pad, packTo);
    const [v] = await takeData([r.lp]);
    chosen.push(...r.chosen.map((k) => v[k]));
    rejected.push(...r.rejected.map((k) => v[k]));
  }
  return { chosen, rejected };
}

/**
 * Direct preference optimisation and its variants (preference-loss.ts) on the trainer's pieces:
 * AdamW with warmup and decay, accumulation, clipping, LoRA / QLoRA. The reference is the model as
 * loaded: with LoRA, the same weights with the adapter off; for full fine-tuning, its
 * log-probabilities computed once before the first step. Logs loss, implicit rewards, margin and
 * accuracy per step, and the held-out pairs' reward accuracy and margin before and after.
 */
export async function trainPreference(loaded: LoadedModel, o: PreferenceTrainOptions): Promise<PreferenceResult> {
  prepareFullTraining(loaded, o.lora);
  if (!loaded.tokenizer) throw new LlmboxError('the model has no tokenizer.json', { file: loaded.dir });
  const settings: PreferenceSettings = {
    loss: o.preference?.loss ?? DEFAULTS.preference.loss,
    beta: o.preference?.beta ?? DEFAULTS.preference.beta,
    labelSmoothing: o.preference?.labelSmoothing ?? 0,
    gamma: o.preference?.gamma ?? DEFAULTS.preference.simpoGamma,
  };
  if (settings.labelSmoothing! < 0 || settings.labelSmoothing! >= 0.5)
    throw new LlmboxError(`--label-smoothing ${settings.labelSmoothing} must be in [0, 0.5)`, {
      field: '--label-smoothing',
    });
  const maxLength = o.maxLength ?? Math.min(512, loaded.model.config.maxPositionEmbeddings);
  const seed = o.seed ?? DEFAULTS.train.seed;
  const { train: trainPairs, val, dropped } = await splitPairs(loaded, o, maxLength, seed);
  const h = hyperparameters(o, trainPairs.length);
  const pad = loaded.tokenizer.padTokenId ?? loaded.generation.padTokenId ?? 0;

  // The reference as loaded: computed now for full fine-tuning (its weights change from the first step).
  const free = referenceFree(settings.loss);
  const precompute = !free && (!o.lora || !!o.preference?.precomputeReference);
  const reference = free ? 'none' : precompute ? 'precomputed' : 'adapter off';
  // Packed rows hold the batch's pairs in rows of --max-length tokens (the reference laid out alike).
  const packTo = o.packing ? maxLength : undefined;
  const refTrain = precompute ? await logpsOf(loaded, trainPairs, h.batchSize, pad, packTo) : undefined;
  const refVal = precompute ? await logpsOf(loaded, val, h.batchSize, pad, packTo) : undefined;

  if (o.qlora) {
    await readableOnHost(loaded.model.params.values());
    loaded.model.holdLinearsAsNF4();
  }
  if (o.lora) addLora(loaded.model, { seed, ...o.lora });
  const slots = slotsOf(loaded.model.lora ? loaded.model.adapters : loaded.model.params);
  const opt = new AdamW({ weightDecay: h.weightDecay });
  const schedule = {
    lr: h.lr,
    warmupSteps: h.warmupSteps,
    totalSteps: h.totalSteps,
    schedule: h.schedule,
    minLrRatio: h.minLrRatio,
  } as const;

  const refFor = async (set: PairRows[], idx: number[], pre?: { chosen: number[]; rejected: number[] }) => {
    if (free) return undefined;
    if (pre) return { chosen: idx.map((i) => pre.chosen[i]), rejected: idx.map((i) => pre.rejected[i]) };
    return withAdapterOff(loaded.model, () =>
      logpsOf(
        loaded,
        idx.map((i) => set[i]),
        idx.length,
        pad,
        packTo,
      ),
    );
  };
  const lossOf = (set: PairRows[], idx: number[], ref: { chosen: number[]; rejected: number[] } | undefined) => {
    const part = idx.map((i) => set[i]);
    const r = pairLogps(loaded, part, pad, packTo);
    return preferenceLoss(
      {
        chosen: pickEntries(r.lp, r.chosen),
        rejected: pickEntries(r.lp, r.rejected),
        refChosen: ref && tf.tensor1d(ref.chosen),
        refRejected: ref && tf.tensor1d(ref.rejected),
        chosenTokens: tf.tensor1d(part.map((p) => targetsOf(p.chosen))),
        rejectedTokens: tf.tensor1d(part.map((p) => targetsOf(p.rejected))),
      },
      settings,
    );
  };

  const evaluateVal = async (step: number): Promise<PreferenceEval | null> => {
    if (!val.length) return null;
    let correct = 0,
      margin = 0,
      loss = 0;
    for (let i = 0; i < val.length; i += h.batchSize) {
      const idx = Array.from({ length: Math.min(h.batchSize, val.length - i) }, (_, k) => i + k);
      const ref = await refFor(val, idx, refVal);
      const [m, l] = await takeData(
        tf.tidy(() => {
          const r = lossOf(val, idx, ref);
          return [tf.sub(r.chosenRewards, r.rejectedRewards), r.loss];
        }),
      );
      for (const x of m) {
        margin += x;
        if (x > 0) correct++;
      }
      loss += l[0] * idx.length;
    }
    return { step, accuracy: correct / val.length, margin: margin / val.length, loss: loss / val.length };
  };

  // A resumed run continues from the newest checkpoint: adapter or weights, optimizer moments, logs.
  const run = new StageCheckpoints<PreferenceStep, PreferenceEval>(o, loaded, opt, {
    datasets: o.datasets,
    maxLength,
    seed,
    settings,
    reference,
    h,
    lora: o.lora ?? null,
    qlora: !!o.qlora,
    valSize: o.valSize ?? null,
    packing: !!o.packing,
    template: o.template ?? null,
  });
  const { metrics, evals, startStep } = run;
  if (!run.resumed) {
    const first = await evaluateVal(0);
    if (first) evals.push(first);
  }
  const order = pairOrder(trainPairs.length, seed);
  let cursor = startStep * h.accum * h.batchSize;
  for (let step = startStep; step < h.totalSteps; step++) {
    const t0 = performance.now();
    let tokens = 0;
    let acc: tf.Tensor[] | null = null;
    const logged = { loss: 0, chosen: 0, rejected: 0, margin: 0, correct: 0, n: 0 };
    for (let m = 0; m < h.accum; m++) {
      const idx = Array.from({ length: h.batchSize }, () => order(cursor++));
      tokens += pairTokens(idx.map((i) => trainPairs[i]));
      const ref = await refFor(trainPairs, idx, refTrain);
      let rewards: tf.Tensor[] = [];
      const g = await slotGradients(slots, () => {
        const r = lossOf(trainPairs, idx, ref);
        rewards = [tf.keep(r.chosenRewards), tf.keep(r.rejectedRewards)];
        return tf.div(r.loss, h.accum) as tf.Scalar;
      });
      const [cr, rr] = await takeData(rewards);
      cr.forEach((c, k) => {
        logged.chosen += c;
        logged.rejected += rr[k];
        logged.margin += c - rr[k];
        if (c > rr[k]) logged.correct++;
        logged.n++;
      });
      logged.loss += g.value;
      acc = addGradients(acc, g.grads);
    }
    const lr = learningRate(step, schedule);
    const norm = await applyUpdate(slots, acc!, opt, lr, h.maxGradNorm);
    const metric: PreferenceStep = {
      step: step + 1,
      loss: logged.loss,
      chosenReward: logged.chosen / logged.n,
      rejectedReward: logged.rejected / logged.n,
      margin: logged.margin / logged.n,
      accuracy: logged.correct / logged.n,
      lr,
      gradNorm: norm,
      tokens,
      seconds: (performance.now() - t0) / 1000,
    };
    metrics.push(metric);
    o.onPreferenceStep?.(metric, h.totalSteps);
    o.onStep?.(stepMetrics(metric), h.totalSteps);
    if (due(metric.step, o.evalEvery, h.totalSteps)) {
      const e = await evaluateVal(metric.step);
      if (e) evals.push(e);
    }
    if (o.output && due(metric.step, o.saveEvery, h.totalSteps)) await run.save(metric.step);
  }
  opt.dispose();
  if (o.output) await saveFinal(o.output, loaded);
  const total = loaded.model.numParameters();
  return {
    stage: 'dpo',
    settings,
    reference,
    steps: h.totalSteps,
    metrics,
    evals,
    pairs: { train: trainPairs.length, val: val.length, dropped },
    resumedFrom: run.resumed ? startStep : null,
    parameters: { total, trainable: slotSize(slots) },
    checkpoint: run.checkpoint,
  };
}
