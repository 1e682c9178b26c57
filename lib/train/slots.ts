import * as tf from '@tensorflow/tfjs';
import { AdamW, clipByGlobalNorm } from './optim.js';

/** A trainable tensor where the model reads it: a map (parameters or adapters) and its name there. */
export interface Slot {
  map: Map<string, tf.Tensor>;
  name: string;
}

/** The slots of every tensor of a map, and of the given extra names of another (a head beside adapters). */
export function slotsOf(map: Map<string, tf.Tensor>, skip: string[] = []): Slot[] {
  return [...map.keys()].filter((n) => !skip.includes(n)).map((name) => ({ map, name }));
}

/**
 * The value of f and its gradients with respect to the slots' tensors (f reads them through the
 * model's maps); the maps hold the original tensors again afterwards.
 */
export async function slotGradients(slots: Slot[], f: () => tf.Scalar): Promise<{ value: number; grads: tf.Tensor[] }> {
  const originals = slots.map((s) => s.map.get(s.name)!);
  let result: { value: tf.Scalar; grads: tf.Tensor[] };
  try {
    result = tf.valueAndGrads((...ps: tf.Tensor[]) => {
      slots.forEach((s, i) => s.map.set(s.name, ps[i]));
      return f();
    })(originals);
  } finally {
    slots.forEach((s, i) => s.map.set(s.name, originals[i]));
  }
  const v = (await result.value.data())[0];
  result.value.dispose();
  return { value: v, grads: result.grads };
}

/** Gradient lists summed (micro-batches of one step); the inputs are disposed. */
export function addGradients(acc: tf.Tensor[] | null, grads: tf.Tensor[]): tf.Tensor[] {
  if (!acc) return grads;
  return acc.map((g, i) => {
    const sum = tf.add(g, grads[i]);
    g.dispose();
    grads[i].dispose();
    return sum;
  });
}

/** One AdamW update of the slots from their summed gradients, clipped to the global norm; returns the norm before clipping. */
export async function applyUpdate(
  slots: Slot[],
  grads: tf.Tensor[],
  opt: AdamW,
  lr: number,
  maxGradNorm: number,
): Promise<number> {
  const keys = slots.map((_, i) => String(i));
  const clipped = await clipByGlobalNorm(new Map(keys.map((k, i) => [k, grads[i]])), maxGradNorm);
  const updated = opt.apply(new Map(keys.map((k, i) => [k, slots[i].map.get(slots[i].name)!])), clipped.grads, lr);
  slots.forEach((s, i) => {
    s.map.get(s.name)!.dispose();
    s.map.set(s.name, updated.get(keys[i])!);
  });
  tf.dispose([...clipped.grads.values()]);
  return clipped.norm;
}

/** Elements held by the slots. */
export const slotSize = (slots: Slot[]) => slots.reduce((n, s) => n + s.map.get(s.name)!.size, 0);
