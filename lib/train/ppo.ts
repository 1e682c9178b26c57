import * as tf from '@tensorflow/tfjs';
import { LlmboxError } from '../errors.js';
import { embedding, takeData } from '../engine/ops.js';
import { generate } from '../models/generate.js';
import type { LlamaModel } from '../models/llama.js';
import type { LoadedModel } from '../models/load.js';
import { seededRandom } from '../util/random.js';
import { shuffled } from '../data/mixture.js';
import { DEFAULTS } from '../util/defaults.js';
import { saveFinal, StageCheckpoints } from './checkpoint.js';
import { addLora, withAdapterOff } from './lora.js';
import { AdamW } from './optim.js';
import { applyUpdate, slotGradients, slotSize, slotsOf } from './slots.js';
import { AdaptiveKl, gae, tokenRewards, whiten } from './ppo-math.js';
import { due, type TrainOptions } from './trainer.js';

export type RewardFunction = (prompt: string, response: string) => number | Promise<number>;

export interface PpoOptions extends Pick<
  TrainOptions,
  'lora' | 'lr' | 'maxGradNorm' | 'seed' | 'output' | 'weightDecay' | 'resume' | 'saveEvery' | 'saveTotalLimit'
> {
  prompts: string[];
  reward: RewardFunction;
  steps: number;
  /** Prompts per rollout, responses' length cap and sampling temperature. */
  batchSize?: number;
  maxNewTokens?: number;
  temperature?: number;
  /** Optimisation passes over each rollout, in minibatches of this many responses. */
  ppoEpochs?: number;
  minibatch?: number;
  /** Initial KL coefficient, its target and horizon (adaptive; target null keeps it fixed). */
  klCoef?: number;
  klTarget?: number | null;
  klHorizon?: number;
  gamma?: number;
  lam?: number;
  clip?: number;
  valueClip?: number;
  valueCoef?: number;
  onPpoStep?: (m: PpoStep, total: number) => void;
}

export interface PpoStep {
  step: number;
  /** Mean score of the rollout's responses (the reward function). */
  reward: number;
  /** Mean over responses of the summed log-ratio to the reference (an estimate of KL). */
  kl: number;
  klCoef: number;
  entropy: number;
  clipFraction: number;
  policyLoss: number;
  valueLoss: number;
  responseTokens: number;
  seconds: number;
}

export interface PpoResult {
  stage: 'ppo';
  steps: number;
  metrics: PpoStep[];
  parameters: { total: number; trainable: number };
  output: string | null;
  checkpoint: string | null;
  /** The step a resumed run continued from. */
  resumedFrom: number | null;
}

/** Log-probabilities of the next tokens, the value head's estimates and the entropies at flat positions (row * T + t). */
function tokenStats(model: LlamaModel, ids: number[][], positions: number[], next: number[]) {
  const B = ids.length,
    T = ids[0].length;
  const hidden = model.forward(ids);
  const picked = embedding(
    hidden.reshape([B * T, model.config.hiddenSize]) as tf.Tensor2D,
    tf.tensor1d(positions, 'int32'),
  ) as tf.Tensor2D;
  const logits = model.logits(picked);
  const logSoft = tf.logSoftmax(logits);
  const oneHot = tf.oneHot(tf.tensor1d(next, 'int32'), model.config.vocabSize);
  const logp = tf.sum(tf.mul(logSoft, oneHot), 1) as tf.Tensor1D;
  const entropy = tf.neg(tf.sum(tf.mul(tf.exp(logSoft), logSoft), 1)) as tf.Tensor1D;
  const values = tf
    .matMul(picked, model.params.get('value.weight') as tf.Tensor2D)
    .reshape([positions.length]) as tf.Tensor1D;
  return { logp, entropy, values };
}

interface Rollout {
  prompt: string;
  ids: number[];
  /** Where the response starts in ids. */
  start: number;
  text: string;
}

/** The positions of a batch of rollouts' response tokens, right-padded into rows of the longest. */
function layout(rollouts: Rollout[], pad: number) {
  const T = Math.max(...rollouts.map((r) => r.ids.length));
  const ids = rollouts.map((r) => [...r.ids, ...new Array<number>(T - r.ids.length).fill(pad)]);
  const positions: number[] = [],
    next: number[] = [],
    owner: number[] = [];
  rollouts.forEach((r, b) => {
    for (let t = r.start; t < r.ids.length; t++) {
      positions.push(b * T + t - 1);
      next.push(r.ids[t]);
      owner.push(b);
    }
  });
  return { ids, positions, next, owner };
}

/**
 * PPO for a language model with LoRA: the policy is the adapted model, the reference the same
 * weights with the adapter off, and a value head on the final hidden states shares the base.
 * Each step samples responses to a batch of prompts, scores them with the reward function, adds
 * the per-token KL penalty, estimates advantages by GAE (whitened), and runs clipped policy and
 * value updates over minibatches; the KL coefficient adapts toward its target.
 */
export async function trainPpo(loaded: LoadedModel, o: PpoOptions): Promise<PpoResult> {
  const tok = loaded.tokenizer;
  if (!tok) throw new LlmboxError('the model has no tokenizer.json', { file: loaded.dir });
  if (!o.lora)
    throw new LlmboxError('PPO trains LoRA adapters (policy, reference and value head share the base weights)', {
      field: '--lora-rank',
      fix: 'add --lora-rank R',
    });
  if (!o.prompts.length) throw new LlmboxError('PPO needs prompts', { field: '--dataset' });
  const d = DEFAULTS.ppo;
  const seed = o.seed ?? DEFAULTS.train.seed;
  const batchSize = o.batchSize ?? d.batchSize,
    minibatch = o.minibatch ?? Math.max(1, Math.floor(batchSize / 2));
  const kl = new AdaptiveKl(o.klCoef ?? d.klCoef, o.klTarget ?? d.klTarget, o.klHorizon ?? d.klHorizon);
  const adaptive = o.klTarget !== null;
  const model = loaded.model;
  addLora(model, { seed, ...o.lora });
  const H = model.config.hiddenSize;
  model.params.set('value.weight', tf.zeros([H, 1]));
  const slots = [...slotsOf(model.adapters), { map: model.params, name: 'value.weight' }];
  const opt = new AdamW({ weightDecay: o.weightDecay ?? 0 });
  const pad = tok.padTokenId ?? loaded.generation.padTokenId ?? 0;
  // A resumed run continues from the newest checkpoint: adapter, value head, optimizer, KL coefficient, logs.
  const { reward: _r, onPpoStep: _s, output: _o, resume: _re, saveEvery: _se, saveTotalLimit: _st, ...settings } = o;
  const run = new StageCheckpoints<PpoStep, never>(o, loaded, opt, { stage: 'ppo', ...settings, seed }, [
    'value.weight',
  ]);
  if (run.extra?.klCoef !== undefined) kl.value = run.extra.klCoef;
  const metrics = run.metrics;
  try {
    for (let step = run.startStep; step < o.steps; step++) {
      const t0 = performance.now();
      // Each step draws from its own seeded stream, so a resumed run samples what the whole run would have.
      const random = seededRandom(seed * 7919 + step);
      // Rollouts: the current policy samples one response per prompt.
      const prompts = Array.from({ length: batchSize }, () => o.prompts[Math.floor(random() * o.prompts.length)]);
      const encoded = prompts.map((p) => tok.encode(p));
      const gens = await generate(loaded, encoded, {
        maxNewTokens: o.maxNewTokens ?? d.maxNewTokens,
        temperature: o.temperature ?? d.temperature,
        seeds: prompts.map((_, i) => seed * 100_003 + step * 1009 + i),
      });
      const rollouts: Rollout[] = gens
        .map((g, i) => ({ prompt: prompts[i], ids: [...encoded[i], ...g.ids], start: encoded[i].length, text: g.text }))
        .filter((r) => r.ids.length > r.start);
      if (!rollouts.length)
        throw new LlmboxError(`PPO step ${step + 1}: every response was empty`, {
          field: '--max-new-tokens',
          fix: 'allow longer responses, or prompts the model does not end at once',
        });
      const scores = await Promise.all(rollouts.map((r) => o.reward(r.prompt, r.text)));
      if (scores.some((s) => !Number.isFinite(s)))
        throw new LlmboxError('the reward function returned a value that is not a finite number', { field: 'reward' });
      const L = layout(rollouts, pad);
      const [logp, values, entropy] = await takeData(
        tf.tidy(() => {
          const s = tokenStats(model, L.ids, L.positions, L.next);
          return [s.logp, s.values, s.entropy];
        }),
      );
      const old = { logp: [...logp], values: [...values], entropy: [...entropy] };
      const ref = await withAdapterOff(model, async () => [
        ...(await takeData([tf.tidy(() => tokenStats(model, L.ids, L.positions, L.next).logp)]))[0],
      ]);
      // Per response: KL-penalised rewards, GAE; advantages whitened over the rollout.
      const perResponse = rollouts.map((_, b) => L.owner.map((o2, k) => (o2 === b ? k : -1)).filter((k) => k >= 0));
      const advantages = new Array<number>(L.positions.length),
        returns = new Array<number>(L.positions.length);
      let klSum = 0;
      perResponse.forEach((ks, b) => {
        const lp = ks.map((k) => old.logp[k]),
          rp = ks.map((k) => ref[k]);
        klSum += lp.reduce((a, x, i) => a + x - rp[i], 0);
        const g = gae(
          tokenRewards(lp, rp, scores[b], kl.value),
          ks.map((k) => old.values[k]),
          o.gamma ?? d.gamma,
          o.lam ?? d.lam,
        );
        ks.forEach((k, i) => {
          advantages[k] = g.advantages[i];
          returns[k] = g.returns[i];
        });
      });
      const adv = whiten(advantages);
      const clip = o.clip ?? d.clip,
        vclip = o.valueClip ?? d.valueClip,
        vcoef = o.valueCoef ?? d.valueCoef;
      let clipped = 0,
        counted = 0,
        pgSum = 0,
        vfSum = 0,
        updates = 0;
      for (let epoch = 0; epoch < (o.ppoEpochs ?? d.ppoEpochs); epoch++) {
        const order = shuffled(
          rollouts.map((_, i) => i),
          random,
        );
        for (let m = 0; m < order.length; m += minibatch) {
          const part = order.slice(m, m + minibatch);
          const sub = layout(
            part.map((i) => rollouts[i]),
            pad,
          );
          // The flat indices of these responses' tokens in the rollout's arrays.
          const flat = part.flatMap((i) => perResponse[i]);
          const A = tf.tensor1d(flat.map((k) => adv[k])),
            R = tf.tensor1d(flat.map((k) => returns[k])),
            oldLogp = tf.tensor1d(flat.map((k) => old.logp[k])),
            oldV = tf.tensor1d(flat.map((k) => old.values[k]));
          let logged: tf.Tensor[] = [];
          const g = await slotGradients(slots, () => {
            const st = tokenStats(model, sub.ids, sub.positions, sub.next);
            const ratio = tf.exp(tf.sub(st.logp, oldLogp));
            const pg = tf.mean(
              tf.maximum(tf.mul(tf.neg(A), ratio), tf.mul(tf.neg(A), tf.clipByValue(ratio, 1 - clip, 1 + clip))),
            );
            const vClipped = tf.add(oldV, tf.clipByValue(tf.sub(st.values, oldV), -vclip, vclip));
            const vf = tf.mul(
              0.5,
              tf.mean(tf.maximum(tf.square(tf.sub(st.values, R)), tf.square(tf.sub(vClipped, R)))),
            );
            logged = [tf.keep(ratio), tf.keep(pg), tf.keep(vf)];
            return tf.add(pg, tf.mul(vcoef, vf)) as tf.Scalar;
          });
          tf.dispose([A, R, oldLogp, oldV]);
          const [ratios, pgv, vfv] = await takeData(logged);
          pgSum += pgv[0];
          vfSum += vfv[0];
          for (const r of ratios) {
            counted++;
            if (Math.abs(r - 1) > clip) clipped++;
          }
          await applyUpdate(slots, g.grads, opt, o.lr ?? d.lr, o.maxGradNorm ?? 1);
          updates++;
        }
      }
      const meanKl = klSum / rollouts.length;
      const metric: PpoStep = {
        step: step + 1,
        reward: scores.reduce((a, b) => a + b, 0) / scores.length,
        kl: meanKl,
        klCoef: kl.value,
        entropy: old.entropy.reduce((a, b) => a + b, 0) / old.entropy.length,
        clipFraction: counted ? clipped / counted : 0,
        policyLoss: pgSum / updates,
        valueLoss: vfSum / updates,
        responseTokens: L.positions.length,
        seconds: (performance.now() - t0) / 1000,
      };
      if (adaptive) kl.update(meanKl, rollouts.length);
      metrics.push(metric);
      o.onPpoStep?.(metric, o.steps);
      if (o.output && due(metric.step, o.saveEvery, o.steps)) await run.save(metric.step, { klCoef: kl.value });
    }
  } finally {
    opt.dispose();
  }
  const trainable = slotSize(slots);
  // The value head is training scaffolding, not part of the policy that is saved.
  model.params.get('value.weight')?.dispose();
  model.params.delete('value.weight');
  if (o.output) await saveFinal(o.output, loaded);
  return {
    stage: 'ppo',
    steps: o.steps,
    metrics,
    checkpoint: run.checkpoint,
    resumedFrom: run.resumed ? run.startStep : null,
    parameters: { total: model.numParameters(), trainable },
    output: o.output ?? null,
  };
}
