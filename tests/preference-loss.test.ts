import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { preferenceLoss, type PairLogps, type PreferenceSettings } from '../lib/train/preference-loss.js';

/** One pair: policy log-probs -10 (chosen, 4 tokens) and -12 (rejected, 5 tokens); the reference -11 for both. */
const pair = (): PairLogps => ({
  chosen: tf.tensor1d([-10]),
  rejected: tf.tensor1d([-12]),
  refChosen: tf.tensor1d([-11]),
  refRejected: tf.tensor1d([-11]),
  chosenTokens: tf.tensor1d([4]),
  rejectedTokens: tf.tensor1d([5]),
});
const run = (s: PreferenceSettings, p = pair()) => {
  const out = preferenceLoss(p, s);
  return {
    loss: out.loss.dataSync()[0],
    chosen: out.chosenRewards.dataSync()[0],
    rejected: out.rejectedRewards.dataSync()[0],
  };
};
const softplus = (x: number) => Math.log(1 + Math.exp(x));

describe('preference losses against values worked by hand', () => {
  // Delta = (-10 - -11) - (-12 - -11) = 2, so beta * Delta = 0.2 at beta 0.1.
  it('DPO (sigmoid): -log sigmoid(beta * Delta), rewards beta times the log-ratios', () => {
    const r = run({ loss: 'sigmoid', beta: 0.1 });
    expect(r.loss).toBeCloseTo(0.598138869, 6); // log(1 + e^-0.2)
    expect(r.chosen).toBeCloseTo(0.1, 6);
    expect(r.rejected).toBeCloseTo(-0.1, 6);
  });
  it('cDPO label smoothing and the robust loss', () => {
    expect(run({ loss: 'sigmoid', beta: 0.1, labelSmoothing: 0.1 }).loss).toBeCloseTo(
      0.9 * softplus(-0.2) + 0.1 * softplus(0.2),
      6,
    );
    expect(run({ loss: 'sigmoid', beta: 0.1, labelSmoothing: 0.1 }).loss).toBeCloseTo(0.618138869, 6);
    expect(run({ loss: 'robust', beta: 0.1, labelSmoothing: 0.1 }).loss).toBeCloseTo(0.573138869, 6);
  });
  it('hinge and IPO (per-token average log-ratios)', () => {
    expect(run({ loss: 'hinge', beta: 0.1 }).loss).toBeCloseTo(0.8, 6);
    // IPO: (-10/4 + 11/4) - (-12/5 + 11/5) = 0.45; (0.45 - 1/(2*0.1))^2
    expect(run({ loss: 'ipo', beta: 0.1 }).loss).toBeCloseTo(20.7025, 4);
  });
  it('SimPO and ORPO need no reference', () => {
    const free = { ...pair(), refChosen: undefined, refRejected: undefined };
    // SimPO: -log sigmoid(2 * (-2.5 + 2.4) - 0.5) = log(1 + e^0.7)
    expect(run({ loss: 'simpo', beta: 2, gamma: 0.5 }, free).loss).toBeCloseTo(1.103186048, 6);
    // ORPO: NLL of chosen (2.5 per token) - 0.1 * log sigmoid(log odds(-2.5) - log odds(-2.4))
    const odds = (a: number) => a - Math.log(1 - Math.exp(a));
    const expected = 2.5 + 0.1 * softplus(-(odds(-2.5) - odds(-2.4)));
    expect(run({ loss: 'orpo', beta: 0.1 }, free).loss).toBeCloseTo(expected, 6);
    expect(expected).toBeCloseTo(2.5749369, 5);
    expect(() => run({ loss: 'sigmoid', beta: 0.1 }, free)).toThrow(/needs reference log-probabilities/);
  });
  it('at step 0, with the policy equal to the reference, DPO is ln 2 and the margin 0', () => {
    const same: PairLogps = {
      chosen: tf.tensor1d([-7, -3]),
      rejected: tf.tensor1d([-9, -4]),
      refChosen: tf.tensor1d([-7, -3]),
      refRejected: tf.tensor1d([-9, -4]),
      chosenTokens: tf.tensor1d([3, 2]),
      rejectedTokens: tf.tensor1d([4, 2]),
    };
    const out = preferenceLoss(same, { loss: 'sigmoid', beta: 0.5 });
    expect(out.loss.dataSync()[0]).toBeCloseTo(Math.LN2, 6);
    expect([...tf.sub(out.chosenRewards, out.rejectedRewards).dataSync()]).toEqual([0, 0]);
  });
  it('is differentiable in the policy log-probabilities: d loss / d chosen = -beta * sigmoid(-h)', () => {
    const p = pair();
    const g = tf.grad(
      (c: tf.Tensor) => preferenceLoss({ ...p, chosen: c as tf.Tensor1D }, { loss: 'sigmoid', beta: 0.1 }).loss,
    )(p.chosen);
    expect(g.dataSync()[0]).toBeCloseTo(-0.1 / (1 + Math.exp(0.2)), 6);
  });
});
