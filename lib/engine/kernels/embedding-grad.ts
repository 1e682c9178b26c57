import * as tf from '@tensorflow/tfjs';
import type { NativeAddon } from '../native.js';
import { asWasmBackend, heapOffset } from '../wasm-heap.js';

export const EMBEDDING_GRAD = 'LlmboxEmbeddingGrad';

/** Scatter-add of output gradients into a zeroed [vocab, dim] table gradient, on the wasm heap. */
export function nativeEmbeddingGradConfig(addon: NativeAddon): tf.KernelConfig {
  const kernelFunc: tf.KernelFunc = ({ inputs, backend: b, attrs }) => {
    const backend = asWasmBackend(b);
    if (!backend) throw new Error(`${EMBEDDING_GRAD}: needs the wasm backend`);
    const ids = inputs.ids as tf.TensorInfo,
      dy = inputs.dy as tf.TensorInfo;
    const { vocab, dim } = attrs as unknown as { vocab: number; dim: number };
    const n = ids.shape.reduce((x, y) => x * y, 1);
    const out = backend.makeOutput([vocab, dim], 'float32');
    addon.embeddingGrad(
      backend.wasm.HEAPF32,
      heapOffset(backend, ids),
      heapOffset(backend, dy),
      heapOffset(backend, out),
      n,
      dim,
      vocab,
    );
    return out;
  };
  return { kernelName: EMBEDDING_GRAD, backendName: 'wasm', kernelFunc };
}
