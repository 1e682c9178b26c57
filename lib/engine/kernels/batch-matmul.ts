import * as tf from '@tensorflow/tfjs';
import type { NativeAddon } from '../native.js';
import { asWasmBackend, heapOffset } from '../wasm-heap.js';

/**
 * BatchMatMul for the wasm backend on the system BLAS, with transposes and broadcast batch
 * dimensions. tfjs-wasm's own kernel is fast only for untransposed 2-D products; every matmul
 * gradient uses a transpose, so training depends on this one.
 */
export function nativeBatchMatMulConfig(addon: NativeAddon, fallback: tf.KernelConfig): tf.KernelConfig {
  const kernelFunc: tf.KernelFunc = (args) => {
    const { inputs, backend: b, attrs } = args;
    const a = inputs.a as tf.TensorInfo;
    const bb = inputs.b as tf.TensorInfo;
    const backend = asWasmBackend(b);
    if (!backend || a.dtype !== 'float32' || bb.dtype !== 'float32') return fallback.kernelFunc(args);
    const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
    const ra = a.shape.length,
      rb = bb.shape.length;
    const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
    const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
    const kb = transposeB ? bb.shape[rb - 1] : bb.shape[rb - 2];
    const n = transposeB ? bb.shape[rb - 2] : bb.shape[rb - 1];
    if (k !== kb) {
      throw new Error(`BatchMatMul: inner dimensions ${k} and ${kb} of shapes [${a.shape}] and [${bb.shape}] differ`);
    }
    const batchA = a.shape.slice(0, -2),
      batchB = bb.shape.slice(0, -2);
    const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(batchA, batchB);
    const nBatch = outBatch.reduce((x, y) => x * y, 1);
    const offA = new Int32Array(nBatch),
      offB = new Int32Array(nBatch);
    fillBroadcastOffsets(offA, outBatch, batchA, heapOffset(backend, a), m * k);
    fillBroadcastOffsets(offB, outBatch, batchB, heapOffset(backend, bb), k * n);
    const out = backend.makeOutput([...outBatch, m, n], 'float32');
    // makeOutput may grow wasm memory, which replaces HEAPF32: read it only now.
    addon.batchMatMul(backend.wasm.HEAPF32, offA, offB, heapOffset(backend, out), m, n, k, transposeA, transposeB);
    return out;
  };
  return { kernelName: tf.BatchMatMul, backendName: 'wasm', kernelFunc };
}

/** Element offsets of each output batch's operand, following numpy broadcasting of batch dims. */
function fillBroadcastOffsets(dst: Int32Array, outBatch: number[], inBatch: number[], base: number, matSize: number) {
  const rank = outBatch.length,
    pad = rank - inBatch.length;
  const strides = new Array<number>(inBatch.length);
  let s = matSize;
  for (let i = inBatch.length - 1; i >= 0; i--) {
    strides[i] = s;
    s *= inBatch[i];
  }
  const idx = new Array<number>(rank).fill(0);
  for (let i = 0; i < dst.length; i++) {
    let off = base;
    for (let d = pad; d < rank; d++) if (inBatch[d - pad] !== 1) off += idx[d] * strides[d - pad];
    dst[i] = off;
    for (let d = rank - 1; d >= 0; d--) {
      if (++idx[d] < outBatch[d]) break;
      idx[d] = 0;
    }
  }
}
