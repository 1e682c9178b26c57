import * as tf from '@tensorflow/tfjs';

export type Schedule = 'cosine' | 'linear' | 'constant';

export interface ScheduleOptions {
  lr: number;
  warmupSteps: number;
  totalSteps: number;
  schedule: Schedule;
  /** The floor of the decay as a fraction of lr (0: decays to zero, as Hugging Face's schedulers). */
  minLrRatio?: number;
}

/** Learning rate for 0-based optimizer step `step`: linear warmup from 0, then the decay (HF's get_*_schedule_with_warmup). */
export function learningRate(step: number, o: ScheduleOptions): number {
  if (step < o.warmupSteps) return (o.lr * (step + 1)) / (o.warmupSteps + 1);
  const min = o.lr * (o.minLrRatio ?? 0);
  const span = Math.max(1, o.totalSteps - o.warmupSteps);
  const progress = Math.min(1, (step - o.warmupSteps) / span);
  if (o.schedule === 'constant') return o.lr;
  if (o.schedule === 'linear') return min + (o.lr - min) * (1 - progress);
  return min + (o.lr - min) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

/** Global L2 norm of the gradients, and the gradients scaled so that it is at most maxNorm (0: no clipping). */
export async function clipByGlobalNorm(
  grads: Map<string, tf.Tensor>,
  maxNorm: number,
): Promise<{ grads: Map<string, tf.Tensor>; norm: number }> {
  // Summed pairwise, not by one addN: webgpu binds every addN input at once, past its buffer limit.
  const squares = tf.tidy(() => [...grads.values()].map((g) => tf.sum(tf.square(g))).reduce((a, b) => tf.add(a, b)));
  const norm = Math.sqrt((await squares.data())[0]);
  squares.dispose();
  if (!(maxNorm > 0) || norm <= maxNorm) return { grads, norm };
  const scale = maxNorm / (norm + 1e-6);
  const out = new Map<string, tf.Tensor>();
  for (const [k, g] of grads) {
    out.set(k, tf.mul(g, scale));
    g.dispose();
  }
  return { grads: out, norm };
}

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

/** Whether a parameter is decayed: not norms, biases (Hugging Face Trainer's rule). */
export const decays = (name: string) => !/norm\.weight$|\.bias$/.test(name);

/**
 * AdamW (Loshchilov & Hutter): Adam moments with bias correction, weight decay applied to the
 * weights directly (decoupled), as torch.optim.AdamW. State is plain tensors so it can be saved.
 */
export class AdamW {
  readonly m = new Map<string, tf.Tensor>();
  readonly v = new Map<string, tf.Tensor>();
  step = 0;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;

  constructor(o: AdamWOptions = {}) {
    this.beta1 = o.beta1 ?? 0.9;
    this.beta2 = o.beta2 ?? 0.999;
    this.eps = o.eps ?? 1e-8;
    this.weightDecay = o.weightDecay ?? 0;
  }

  /** Returns the updated parameters (new tensors; the caller disposes the old ones). */
  apply(params: Map<string, tf.Tensor>, grads: Map<string, tf.Tensor>, lr: number): Map<string, tf.Tensor> {
    this.step++;
    const { beta1: b1, beta2: b2, eps } = this;
    const c1 = 1 - b1 ** this.step,
      c2 = 1 - b2 ** this.step;
    const out = new Map<string, tf.Tensor>();
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (!g) throw new Error(`AdamW: no gradient for ${name}`);
      const m0 = this.m.get(name),
        v0 = this.v.get(name);
      const [m, v, next] = tf.tidy(() => {
        const m = m0 ? tf.add(tf.mul(m0, b1), tf.mul(g, 1 - b1)) : tf.mul(g, 1 - b1);
        const v = v0 ? tf.add(tf.mul(v0, b2), tf.mul(tf.square(g), 1 - b2)) : tf.mul(tf.square(g), 1 - b2);
        const update = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), eps));
        const decayed = this.weightDecay > 0 && decays(name) ? tf.mul(p, 1 - lr * this.weightDecay) : p;
        return [m, v, tf.sub(decayed, tf.mul(update, lr))];
      });
      m0?.dispose();
      v0?.dispose();
      this.m.set(name, m);
      this.v.set(name, v);
      out.set(name, next);
    }
    return out;
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
    this.m.clear();
    this.v.clear();
  }
}
