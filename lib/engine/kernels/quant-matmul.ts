import * as tf from '@tensorflow/tfjs';
import type { NativeAddon } from '../native.js';
import { asWasmBackend, heapOffset } from '../wasm-heap.js';

export const QUANT_MATMUL = 'LlmboxQuantMatMul';

/** Attributes of a product with a packed weight: its bytes (outside the heap), ggml type, shape [n, k] and input order. */
export interface PackedWeightAttrs {
  weights: Uint8Array;
  type: number;
  n: number;
  k: number;
  inputOrder?: Int32Array;
}

/** x [rows, k] times a packed W [n, k] transposed, reading W in its stored type (native/llmbox_native.c). */
export function nativeQuantMatMulConfig(addon: NativeAddon): tf.KernelConfig {
  const kernelFunc: tf.KernelFunc = ({ inputs, backend: b, attrs }) => {
    const backend = asWasmBackend(b);
    if (!backend) throw new Error(`${QUANT_MATMUL}: needs the wasm backend`);
    const { x } = inputs as Record<string, tf.TensorInfo>;
    const w = attrs as unknown as PackedWeightAttrs;
    const rows = x.shape[0];
    const out = backend.makeOutput([rows, w.n], 'float32');
    // makeOutput may grow wasm memory, which replaces HEAPF32: read it only now.
    addon.quantMatMul(
      backend.wasm.HEAPF32,
      w.weights,
      w.type,
      heapOffset(backend, x),
      heapOffset(backend, out),
      rows,
      w.n,
      w.k,
      w.inputOrder ?? null,
    );
    return out;
  };
  return { kernelName: QUANT_MATMUL, backendName: 'wasm', kernelFunc };
}

export const QUANT_GATHER = 'LlmboxQuantGather';

/** Rows of a packed embedding [vocab, k] picked by int32 ids [N]: [N, k] in float32. */
export function nativeQuantGatherConfig(addon: NativeAddon): tf.KernelConfig {
  const kernelFunc: tf.KernelFunc = ({ inputs, backend: b, attrs }) => {
    const backend = asWasmBackend(b);
    if (!backend) throw new Error(`${QUANT_GATHER}: needs the wasm backend`);
    const { ids } = inputs as Record<string, tf.TensorInfo>;
    const w = attrs as unknown as PackedWeightAttrs;
    const n = ids.shape.reduce((a, d) => a * d, 1);
    const out = backend.makeOutput([n, w.k], 'float32');
    addon.quantGather(
      backend.wasm.HEAPF32,
      w.weights,
      w.type,
      heapOffset(backend, ids),
      heapOffset(backend, out),
      n,
      w.k,
    );
    return out;
  };
  return { kernelName: QUANT_GATHER, backendName: 'wasm', kernelFunc };
}
