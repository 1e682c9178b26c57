import * as tf from '@tensorflow/tfjs';
import { asWasmBackend, heapOffset } from './wasm-heap.js';

interface CpuBackendLike {
  data: { get(dataId: object): { values?: unknown } | undefined };
}

/**
 * Copies src [A, B, T, D] into dst [A, B, C, D] at positions start..start+T of axis 2, in place on
 * backends whose memory llmbox can address (wasm, cpu), so a pre-allocated cache never grows by
 * copying. Other backends get a functional update; the returned tensor is the one to keep.
 */
export function writeAxis2(dst: tf.Tensor4D, src: tf.Tensor4D, start: number): tf.Tensor4D {
  const [a, b, cap, d] = dst.shape;
  const t = src.shape[2];
  if (src.shape[0] !== a || src.shape[1] !== b || src.shape[3] !== d || start < 0 || start + t > cap) {
    throw new Error(`writeAxis2: cannot write [${src.shape}] into [${dst.shape}] at ${start}`);
  }
  const backend = tf.backend();
  const wasm = asWasmBackend(backend);
  if (wasm) {
    const heap = wasm.wasm.HEAPF32;
    const so = heapOffset(wasm, src),
      dOff = heapOffset(wasm, dst);
    for (let i = 0; i < a * b; i++) heap.copyWithin(dOff + (i * cap + start) * d, so + i * t * d, so + (i + 1) * t * d);
    return dst;
  }
  const cpuValues = (backend as unknown as Partial<CpuBackendLike>).data?.get?.(dst.dataId)?.values;
  const srcValues = (backend as unknown as Partial<CpuBackendLike>).data?.get?.(src.dataId)?.values;
  if (tf.getBackend() === 'cpu' && cpuValues instanceof Float32Array && srcValues instanceof Float32Array) {
    for (let i = 0; i < a * b; i++)
      cpuValues.set(srcValues.subarray(i * t * d, (i + 1) * t * d), (i * cap + start) * d);
    return dst;
  }
  const next = tf.tidy(() => {
    const parts: tf.Tensor4D[] = [];
    if (start > 0) parts.push(tf.slice(dst, [0, 0, 0, 0], [a, b, start, d]));
    parts.push(src);
    if (start + t < cap) parts.push(tf.slice(dst, [0, 0, start + t, 0], [a, b, cap - start - t, d]));
    return tf.concat(parts, 2);
  });
  dst.dispose();
  return next;
}
