import * as tf from '@tensorflow/tfjs';
import { nativeAddon } from '../engine/index.js';
import { writeAxis2 } from '../engine/inplace.js';
import type { ModelConfig } from './config.js';

/** Keys and values of an encoded prefix, [1, kvHeads, length, headDim] per layer, every slot a real token. */
export interface PastKV {
  length: number;
  keys: tf.Tensor4D[];
  values: tf.Tensor4D[];
}

/**
 * Pre-allocated key/value cache, [batch, kvHeads, capacity, headDim] per layer. New keys are written
 * in place at the next free slots; attention reads the whole buffer under a mask, so decoding never
 * reallocates or concatenates.
 */
export class KVCache {
  readonly batch: number;
  readonly capacity: number;
  /** Slots filled so far (the same for every row; padding is masked, not skipped). */
  length = 0;
  /** 1 where a slot holds a real token, per row: [batch * capacity]. */
  readonly valid: Uint8Array;
  /** Position id of the token in each slot: [batch * capacity]. */
  readonly positions: Int32Array;
  /** Position id of the next token, per row. */
  readonly nextPosition: Int32Array;
  readonly keys: tf.Tensor4D[] = [];
  readonly values: tf.Tensor4D[] = [];

  constructor(cfg: ModelConfig, batch: number, capacity: number) {
    this.batch = batch;
    this.capacity = capacity;
    this.valid = new Uint8Array(batch * capacity);
    this.nextPosition = new Int32Array(batch);
    this.positions = new Int32Array(batch * capacity);
    for (let l = 0; l < cfg.numLayers; l++) {
      this.keys.push(tf.keep(tf.zeros([batch, cfg.numKvHeads, capacity, cfg.headDim])));
      this.values.push(tf.keep(tf.zeros([batch, cfg.numKvHeads, capacity, cfg.headDim])));
    }
  }

  write(layer: number, k: tf.Tensor4D, v: tf.Tensor4D): void {
    this.keys[layer] = tf.keep(writeAxis2(this.keys[layer], k, this.length));
    this.values[layer] = tf.keep(writeAxis2(this.values[layer], v, this.length));
  }

  /**
   * Keys and values to attend over. tfjs-wasm's own matmul caches packed operands per tensor id
   * (XNNPACK), so without the native kernels a buffer written in place must be read through a
   * fresh copy; the native kernels and the cpu backend read memory directly.
   */
  read(layer: number): [tf.Tensor4D, tf.Tensor4D] {
    const k = this.keys[layer],
      v = this.values[layer];
    if (tf.getBackend() !== 'wasm' || nativeAddon()) return [k, v];
    return [tf.add(k, 0), tf.add(v, 0)];
  }

  /** Row b takes the keys and values of row rows[b] (beam search keeps the beams that survive). */
  reorder(rows: number[]): void {
    if (rows.length !== this.batch) throw new Error(`reorder: ${rows.length} rows for a cache of ${this.batch}`);
    const idx = tf.tensor1d(rows, 'int32');
    for (const store of [this.keys, this.values]) {
      store.forEach((t, l) => {
        store[l] = tf.keep(tf.gather(t, idx, 0));
        t.dispose();
      });
    }
    idx.dispose();
    const cap = this.capacity;
    for (const arr of [this.valid, this.positions, this.nextPosition] as (Uint8Array | Int32Array)[]) {
      const width = arr === this.nextPosition ? 1 : cap;
      const old = arr.slice();
      rows.forEach((r, b) => arr.set(old.subarray(r * width, (r + 1) * width), b * width));
    }
  }

  dispose(): void {
    for (const t of [...this.keys, ...this.values]) t.dispose();
    this.keys.length = 0;
    this.values.length = 0;
  }
}
