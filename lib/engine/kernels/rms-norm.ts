import * as tf from '@tensorflow/tfjs';
import type { NativeAddon } from '../native.js';
import { asWasmBackend, heapOffset } from '../wasm-heap.js';

export const RMS_NORM = 'LlmboxRmsNorm';

/** RMSNorm over the last axis in one pass: x [..., dim] and w [dim]. */
export function nativeRmsNormConfig(addon: NativeAddon): tf.KernelConfig {
  const kernelFunc: tf.KernelFunc = ({ inputs, backend: b, attrs }) => {
    const backend = asWasmBackend(b);
    if (!backend) throw new Error(`${RMS_NORM}: needs the wasm backend`);
    const { x, w } = inputs as Record<string, tf.TensorInfo>;
    const dim = x.shape[x.shape.length - 1];
    const out = backend.makeOutput(x.shape, 'float32');
    const eps = (attrs as unknown as { eps: number }).eps;
    addon.rmsNorm(
      backend.wasm.HEAPF32,
      heapOffset(backend, x),
      heapOffset(backend, w),
      heapOffset(backend, out),
      x.shape.reduce((a, d) => a * d, 1) / dim,
      dim,
      eps,
    );
    return out;
  };
  return { kernelName: RMS_NORM, backendName: 'wasm', kernelFunc };
}
