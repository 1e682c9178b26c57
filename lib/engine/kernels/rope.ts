import * as tf from '@tensorflow/tfjs';
import type { NativeAddon } from '../native.js';
import { asWasmBackend, heapOffset } from '../wasm-heap.js';

export const ROPE = 'LlmboxRope';

/** rotate_half RoPE in one pass: x [B, T, heads, D] with tables cos, sin [B, T, 1, D]. */
export function nativeRopeConfig(addon: NativeAddon): tf.KernelConfig {
  const kernelFunc: tf.KernelFunc = ({ inputs, backend: b }) => {
    const backend = asWasmBackend(b);
    if (!backend) throw new Error(`${ROPE}: needs the wasm backend`);
    const { x, cos, sin } = inputs as Record<string, tf.TensorInfo>;
    const [B, T, heads, D] = x.shape;
    const out = backend.makeOutput(x.shape, 'float32');
    addon.rope(
      backend.wasm.HEAPF32,
      heapOffset(backend, x),
      heapOffset(backend, cos),
      heapOffset(backend, sin),
      heapOffset(backend, out),
      B * T,
      heads,
      D,
    );
    return out;
  };
  return { kernelName: ROPE, backendName: 'wasm', kernelFunc };
}
