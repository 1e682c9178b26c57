/**
 * The arithmetic of PPO for language models (Ziegler et al. 2019, as TRL's PPOTrainer): per-token
 * rewards with a KL penalty, generalised advantage estimation, whitening, the adaptive KL
 * controller, and the clipped policy and value objectives.
 */

/** Per-token rewards: minus beta times the policy/reference log-ratio of each token, plus the score on the last. */
export function tokenRewards(logp: number[], refLogp: number[], score: number, beta: number): number[] {
  const r = logp.map((l, t) => -beta * (l - refLogp[t]));
  if (r.length) r[r.length - 1] += score;
  return r;
}

/** GAE (Schulman et al. 2016): advantages and returns of one response, the value after its last token being 0. */
export function gae(
  rewards: number[],
  values: number[],
  gamma: number,
  lam: number,
): { advantages: number[]; returns: number[] } {
  const n = rewards.length;
  const advantages = new Array<number>(n);
  let next = 0;
  for (let t = n - 1; t >= 0; t--) {
    const nextValue = t + 1 < n ? values[t + 1] : 0;
    const delta = rewards[t] + gamma * nextValue - values[t];
    next = delta + gamma * lam * next;
    advantages[t] = next;
  }
  return { advantages, returns: advantages.map((a, t) => a + values[t]) };
}

/** Zero mean, unit variance (population variance, as TRL's masked_whiten). */
export function whiten(xs: number[], shiftMean = true): number[] {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const variance = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length;
  const scale = 1 / Math.sqrt(variance + 1e-8);
  return xs.map((x) => (shiftMean ? (x - mean) * scale : (x - mean) * scale + mean));
}

/**
 * Ziegler et al.'s adaptive KL coefficient: nudged so that the observed KL tracks the target, by at
 * most 20% of the error per horizon of samples.
 */
export class AdaptiveKl {
  constructor(
    public value: number,
    readonly target: number,
    readonly horizon: number,
  ) {}
  update(kl: number, samples: number): number {
    const error = Math.min(0.2, Math.max(-0.2, kl / this.target - 1));
    this.value *= 1 + (error * samples) / this.horizon;
    return this.value;
  }
}
