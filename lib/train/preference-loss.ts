import * as tf from '@tensorflow/tfjs';

/**
 * Preference losses over a batch of pairs. `sigmoid` is DPO (Rafailov et al. 2023) with cDPO's
 * label smoothing; `robust` is Chowdhury et al. 2024's unbiased version under label noise; `hinge`
 * is SLiC's; `ipo` is Azar et al. 2023's squared loss on per-token average log-ratios; `simpo`
 * (Meng et al. 2024) and `orpo` (Hong et al. 2024) need no reference model.
 */
export type PreferenceLoss = 'sigmoid' | 'hinge' | 'ipo' | 'robust' | 'simpo' | 'orpo';
export const PREFERENCE_LOSSES: readonly PreferenceLoss[] = ['sigmoid', 'hinge', 'ipo', 'robust', 'simpo', 'orpo'];
export const referenceFree = (loss: PreferenceLoss) => loss === 'simpo' || loss === 'orpo';

export interface PreferenceSettings {
  loss: PreferenceLoss;
  /** DPO's beta (SimPO's too; ORPO's lambda, the odds-ratio weight). */
  beta: number;
  /** cDPO / robust: the probability that a pair's label is flipped. */
  labelSmoothing?: number;
  /** SimPO's target reward margin gamma. */
  gamma?: number;
}

/** Summed log-probabilities of each pair's responses under the policy (and the reference), and their token counts. */
export interface PairLogps {
  chosen: tf.Tensor1D;
  rejected: tf.Tensor1D;
  refChosen?: tf.Tensor1D;
  refRejected?: tf.Tensor1D;
  chosenTokens: tf.Tensor1D;
  rejectedTokens: tf.Tensor1D;
}

export type PreferenceOutput = {
  /** Mean loss over the batch. */
  loss: tf.Scalar;
  /** The implicit rewards logged per step: beta times the log-ratio to the reference (the average log-probability for reference-free losses). */
  chosenRewards: tf.Tensor1D;
  rejectedRewards: tf.Tensor1D;
};

const logSigmoid = (x: tf.Tensor) => tf.neg(tf.softplus(tf.neg(x)));

/** The loss of a batch of pairs, with the rewards the step reports (margin and accuracy follow from them). */
export function preferenceLoss(p: PairLogps, s: PreferenceSettings): PreferenceOutput {
  return tf.tidy((): PreferenceOutput => {
    const { beta } = s;
    const eps = s.labelSmoothing ?? 0;
    const avgC = tf.div(p.chosen, p.chosenTokens),
      avgR = tf.div(p.rejected, p.rejectedTokens);
    if (s.loss === 'simpo') {
      const h = tf.sub(tf.mul(beta, tf.sub(avgC, avgR)), s.gamma ?? 0);
      return {
        loss: tf.mean(tf.neg(logSigmoid(h))),
        chosenRewards: tf.mul(beta, avgC),
        rejectedRewards: tf.mul(beta, avgR),
      };
    }
    if (s.loss === 'orpo') {
      // log odds(y) = log p - log(1 - p), p the per-token average probability of the response.
      const logOdds = (avg: tf.Tensor) => tf.sub(avg, tf.log1p(tf.neg(tf.exp(avg))));
      const ratio = logSigmoid(tf.sub(logOdds(avgC), logOdds(avgR)));
      const nll = tf.neg(avgC);
      return {
        loss: tf.mean(tf.sub(nll, tf.mul(beta, ratio))),
        chosenRewards: tf.mul(beta, avgC),
        rejectedRewards: tf.mul(beta, avgR),
      };
    }
    if (!p.refChosen || !p.refRejected) throw new Error(`preferenceLoss: ${s.loss} needs reference log-probabilities`);
    const ipo = s.loss === 'ipo';
    const per = (x: tf.Tensor1D, n: tf.Tensor1D) => (ipo ? tf.div(x, n) : x);
    const ratioC = tf.sub(per(p.chosen, p.chosenTokens), per(p.refChosen, p.chosenTokens));
    const ratioR = tf.sub(per(p.rejected, p.rejectedTokens), per(p.refRejected, p.rejectedTokens));
    const delta = tf.sub(ratioC, ratioR);
    const h = tf.mul(beta, delta);
    let losses: tf.Tensor;
    if (s.loss === 'sigmoid') losses = tf.sub(tf.mul(-(1 - eps), logSigmoid(h)), tf.mul(eps, logSigmoid(tf.neg(h))));
    else if (s.loss === 'robust')
      losses = tf.div(tf.add(tf.mul(-(1 - eps), logSigmoid(h)), tf.mul(eps, logSigmoid(tf.neg(h)))), 1 - 2 * eps);
    else if (s.loss === 'hinge') losses = tf.relu(tf.sub(1, h));
    else losses = tf.square(tf.sub(delta, 1 / (2 * beta)));
    return {
      loss: tf.mean(losses),
      chosenRewards: tf.mul(beta, ratioC),
      rejectedRewards: tf.mul(beta, ratioR),
    };
  });
}
