import * as tf from '@tensorflow/tfjs';
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { LlmboxError } from '../errors.js';
import { readRecords } from '../data/read.js';
import type { TrainingRecord } from '../data/records.js';
import { tokenizeRecord, type Example } from '../data/tokenize.js';
import { shuffled } from '../data/mixture.js';
import type { LoadedModel } from '../models/load.js';
import { seededRandom } from '../util/random.js';
import { DEFAULTS } from '../util/defaults.js';
import { toBatch, type TrainingRow } from './batches.js';
import { restoreCheckpoint, saveFinal, writeCheckpoint, type TrainerState } from './checkpoint.js';
import { rowLogprobSums } from './loss.js';
import { addLora, quantizeBase, withAdapterOff } from './lora.js';
import { AdamW, learningRate } from './optim.js';
import { addGradients, applyUpdate, slotGradients, slotSize, slotsOf } from './slots.js';
import { preferenceLoss, referenceFree, type PreferenceSettings } from './preference-loss.js';
import { hyperparameters, type TrainOptions } from './trainer.js';
import { valCount } from './data.js';

/** A preference pair as two training rows whose targets are the response tokens. */
export interface PairRows {
  chosen: TrainingRow;
  rejected: TrainingRow;
}

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

/** The preference records of the datasets (prompt/chosen/rejected, HH-RLHF transcripts split at their shared prompt). */
export async function preferenceRecords(o: Pick<TrainOptions, 'datasets' | 'dataDir'>) {
  const out: Extract<TrainingRecord, { kind: 'preference' }>[] = [];
  for (const spec of o.datasets) {
    const { records, file } = await readRecords(spec, { dataDir: o.dataDir });
    const pairs = records.filter((r): r is Extract<TrainingRecord, { kind: 'preference' }> => r.kind === 'preference');
    if (!pairs.length)
      throw new LlmboxError('no preference pairs (prompt/chosen/rejected) in this dataset', {
        file,
        field: '--dataset',
        fix: 'DPO trains on rows with chosen and rejected responses (and a prompt, or HH-RLHF transcripts)',
      });
    out.push(...pairs);
  }
  return out;
}

/**
 * One side of a pair as a row: the conversation rendered by the chat template, only the final reply's
 * tokens as targets (the prompt's earlier assistant turns are context, not what the pair compares).
 * A row longer than maxLength keeps BOS, the prompt's end and the reply (the reply's beginning, with
 * at least half the row for the prompt's end, when the reply alone is too long).
 */
export function replyRow(ex: Example, maxLength: number, bos?: number): TrainingRow | undefined {
  const mask = ex.labelMask;
  let end = mask.length - 1;
  while (end >= 0 && mask[end] !== 1) end--;
  if (end < 1) return undefined;
  let start = end;
  while (start > 0 && mask[start - 1] === 1) start--;
  const ids = ex.inputIds;
  const head = bos !== undefined && ids[0] === bos ? [bos] : [];
  const prompt = ids.slice(head.length, start),
    reply = ids.slice(start);
  const room = maxLength - head.length;
  const replyKept = Math.min(reply.length, Math.max(room - prompt.length, Math.ceil(room / 2)));
  const promptKept = Math.min(prompt.length, room - replyKept);
  const rowIds = [...head, ...prompt.slice(prompt.length - promptKept), ...reply.slice(0, replyKept)];
  if (replyKept < 1 || rowIds.length < 2) return undefined;
  const targets = new Uint8Array(rowIds.length);
  targets.fill(1, rowIds.length - replyKept);
  return { ids: rowIds, targets, segments: rowIds.map(() => 1) };
}

/**
 * Each pair as two rows (replyRow); pairs that lose their reply, or whose two rows come out the
 * same, are dropped and counted.
 */
export function pairRows(
  loaded: LoadedModel,
  records: Extract<TrainingRecord, { kind: 'preference' }>[],
  maxLength: number,
  template?: PreferenceTrainOptions['template'],
): { pairs: PairRows[]; dropped: number } {
  const tok = loaded.tokenizer!;
  const side = (r: (typeof records)[number], reply: string) =>
    replyRow(
      tokenizeRecord(
        tok,
        { kind: 'chat', messages: [...r.prompt, { role: 'assistant', content: reply }] },
        { template },
      ),
      maxLength,
      tok.bosTokenId,
    );
  const pairs: PairRows[] = [];
  let dropped = 0;
  for (const r of records) {
    const chosen = side(r, r.chosen),
      rejected = side(r, r.rejected);
    if (chosen && rejected && chosen.ids.join() !== rejected.ids.join()) pairs.push({ chosen, rejected });
    else dropped++;
  }
  return { pairs, dropped };
}

/** The datasets' pairs as rows, shuffled by the seed, split into training and held-out pairs (--val-size). */
export async function splitPairs(
  loaded: LoadedModel,
  o: Pick<TrainOptions, 'datasets' | 'dataDir' | 'template' | 'valSize'>,
  maxLength: number,
  seed: number,
): Promise<{ train: PairRows[]; val: PairRows[]; dropped: number }> {
  const records = shuffled(await preferenceRecords(o), seededRandom(seed + 1));
  const { pairs, dropped } = pairRows(loaded, records, maxLength, o.template);
  const nVal = valCount(o, pairs.length);
  return { val: pairs.slice(0, nVal), train: pairs.slice(nVal), dropped };
}

/** The i-th training pair in epoch order: each epoch a seeded shuffle, so any step's pairs are known (resume). */
export function pairOrder(n: number, seed: number): (i: number) => number {
  const epochs = new Map<number, number[]>();
  return (i) => {
    const e = Math.floor(i / n);
    if (!epochs.has(e)) {
      epochs.clear();
      epochs.set(
        e,
        shuffled(
          Array.from({ length: n }, (_, k) => k),
          seededRandom(seed * 1000 + e),
        ),
      );
    }
    return epochs.get(e)![i % n];
  };
}

const targetsOf = (r: TrainingRow) => {
  let n = 0;
  for (let t = 0; t + 1 < r.ids.length; t++) if (r.targets[t + 1] === 1) n++;
  return n;
};

/** Summed response log-probabilities of pairs [chosen..., rejected...], without gradients, in batches. */
function logpsOf(
  loaded: LoadedModel,
  pairs: PairRows[],
  batchSize: number,
  pad: number,
): { chosen: number[]; rejected: number[] } {
  const chosen: number[] = [],
    rejected: number[] = [];
  for (let i = 0; i < pairs.length; i += batchSize) {
    const part = pairs.slice(i, i + batchSize);
    const batch = toBatch([...part.map((p) => p.chosen), ...part.map((p) => p.rejected)], pad);
    const lp = rowLogprobSums(loaded.model, batch);
    const v = [...lp.dataSync()];
    lp.dispose();
    chosen.push(...v.slice(0, part.length));
    rejected.push(...v.slice(part.length));
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
  const refTrain = precompute ? logpsOf(loaded, trainPairs, h.batchSize, pad) : undefined;
  const refVal = precompute ? logpsOf(loaded, val, h.batchSize, pad) : undefined;

  if (o.qlora) quantizeBase(loaded.model);
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

  const refFor = (set: PairRows[], idx: number[], pre?: { chosen: number[]; rejected: number[] }) => {
    if (free) return undefined;
    if (pre) return { chosen: idx.map((i) => pre.chosen[i]), rejected: idx.map((i) => pre.rejected[i]) };
    return withAdapterOff(loaded.model, () =>
      logpsOf(
        loaded,
        idx.map((i) => set[i]),
        idx.length,
        pad,
      ),
    );
  };
  const lossOf = (set: PairRows[], idx: number[], ref: { chosen: number[]; rejected: number[] } | undefined) => {
    const part = idx.map((i) => set[i]);
    const lp = rowLogprobSums(
      loaded.model,
      toBatch([...part.map((p) => p.chosen), ...part.map((p) => p.rejected)], pad),
    );
    const n = part.length;
    return preferenceLoss(
      {
        chosen: lp.slice(0, n),
        rejected: lp.slice(n, n),
        refChosen: ref && tf.tensor1d(ref.chosen),
        refRejected: ref && tf.tensor1d(ref.rejected),
        chosenTokens: tf.tensor1d(part.map((p) => targetsOf(p.chosen))),
        rejectedTokens: tf.tensor1d(part.map((p) => targetsOf(p.rejected))),
      },
      settings,
    );
  };

  const evaluateVal = (step: number): PreferenceEval | null => {
    if (!val.length) return null;
    let correct = 0,
      margin = 0,
      loss = 0;
    for (let i = 0; i < val.length; i += h.batchSize) {
      const idx = Array.from({ length: Math.min(h.batchSize, val.length - i) }, (_, k) => i + k);
      const out = tf.tidy(() => {
        const r = lossOf(val, idx, refFor(val, idx, refVal));
        const m = tf.sub(r.chosenRewards, r.rejectedRewards);
        return { m: m.dataSync(), loss: r.loss.dataSync()[0] };
      });
      for (const x of out.m) {
        margin += x;
        if (x > 0) correct++;
      }
      loss += out.loss * idx.length;
    }
    return { step, accuracy: correct / val.length, margin: margin / val.length, loss: loss / val.length };
  };

  // A resumed run continues from the newest checkpoint: adapter or weights, optimizer moments, logs.
  const runKey = createHash('sha256')
    .update(
      JSON.stringify({
        datasets: o.datasets,
        maxLength,
        seed,
        settings,
        reference,
        h,
        lora: o.lora ?? null,
        qlora: !!o.qlora,
        valSize: o.valSize ?? null,
        template: o.template ?? null,
      }),
    )
    .digest('hex')
    .slice(0, 16);
  if (o.output) mkdirSync(o.output, { recursive: true });
  const restored = o.resume && o.output ? restoreCheckpoint(o.output, loaded, opt, runKey) : null;
  const metrics = (restored?.log ?? []) as unknown as PreferenceStep[];
  const evals = (restored?.evalLosses ?? []) as unknown as PreferenceEval[];
  const startStep = restored?.step ?? 0;
  if (!restored) {
    const first = evaluateVal(0);
    if (first) evals.push(first);
  }
  let checkpoint: string | null = null;
  const save = (step: number) => {
    const state = { step, losses: metrics.map((m) => m.loss), evalLosses: evals, runKey, log: metrics };
    checkpoint = writeCheckpoint(o.output!, loaded, opt, state as unknown as TrainerState, o.saveTotalLimit ?? 2);
  };
  const order = pairOrder(trainPairs.length, seed);
  let cursor = startStep * h.accum * h.batchSize;
  for (let step = startStep; step < h.totalSteps; step++) {
    const t0 = performance.now();
    let acc: tf.Tensor[] | null = null;
    const logged = { loss: 0, chosen: 0, rejected: 0, margin: 0, correct: 0, n: 0 };
    for (let m = 0; m < h.accum; m++) {
      const idx = Array.from({ length: h.batchSize }, () => order(cursor++));
      const ref = refFor(trainPairs, idx, refTrain);
      const g = slotGradients(slots, () => {
        const r = lossOf(trainPairs, idx, ref);
        const cr = r.chosenRewards.dataSync(),
          rr = r.rejectedRewards.dataSync();
        cr.forEach((c, k) => {
          logged.chosen += c;
          logged.rejected += rr[k];
          logged.margin += c - rr[k];
          if (c > rr[k]) logged.correct++;
          logged.n++;
        });
        return tf.div(r.loss, h.accum) as tf.Scalar;
      });
      logged.loss += g.value;
      acc = addGradients(acc, g.grads);
    }
    const lr = learningRate(step, schedule);
    const norm = applyUpdate(slots, acc!, opt, lr, h.maxGradNorm);
    const metric: PreferenceStep = {
      step: step + 1,
      loss: logged.loss,
      chosenReward: logged.chosen / logged.n,
      rejectedReward: logged.rejected / logged.n,
      margin: logged.margin / logged.n,
      accuracy: logged.correct / logged.n,
      lr,
      gradNorm: norm,
      seconds: (performance.now() - t0) / 1000,
    };
    metrics.push(metric);
    o.onPreferenceStep?.(metric, h.totalSteps);
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
    const lastStep = metric.step === h.totalSteps;
    if ((o.evalEvery && metric.step % o.evalEvery === 0) || lastStep) {
      const e = evaluateVal(metric.step);
      if (e) evals.push(e);
    }
    if (o.output && ((o.saveEvery && metric.step % o.saveEvery === 0) || lastStep)) save(metric.step);
  }
  opt.dispose();
  if (o.output) saveFinal(o.output, loaded);
  const total = loaded.model.numParameters();
  return {
    stage: 'dpo',
    settings,
    reference,
    steps: h.totalSteps,
    metrics,
    evals,
    pairs: { train: trainPairs.length, val: val.length, dropped },
    resumedFrom: restored ? startStep : null,
    parameters: { total, trainable: slotSize(slots) },
    checkpoint,
  };
}
