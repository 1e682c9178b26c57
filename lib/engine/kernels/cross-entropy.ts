import * as tf from '@tensorflow/tfjs';
import type { NativeAddon } from '../native.js';
import { asWasmBackend, heapOffset } from '../wasm-heap.js';

export const XENT = 'LlmboxSoftmaxXent';
export const XENT_GRAD = 'LlmboxSoftmaxXentGrad';

function wasmOrThrow(b: unknown) {
  const backend = asWasmBackend(b);
  if (!backend) throw new Error(`${XENT}: needs the wasm backend`);
  return backend;
}

/**
 * Per-row softmax cross-entropy in one pass over the logits, returning [loss, logSumExp] (both [rows]).
 * tfjs composes it from ~6 full passes over [rows, vocab], which dominated a training step.
 */
export function nativeCrossEntropyConfigs(addon: NativeAddon): tf.KernelConfig[] {
  const forward: tf.KernelFunc = ({ inputs, backend: b }) => {
    const backend = wasmOrThrow(b);
    const logits = inputs.logits as tf.TensorInfo,
      targets = inputs.targets as tf.TensorInfo;
    const [rows, vocab] = logits.shape;
    const loss = backend.makeOutput([rows], 'float32');
    const lse = backend.makeOutput([rows], 'float32');
    addon.softmaxXent(
      backend.wasm.HEAPF32,
      heapOffset(backend, logits),
      heapOffset(backend, targets),
      heapOffset(backend, loss),
      heapOffset(backend, lse),
      rows,
      vocab,
    );
    return [loss, lse];
  };
  const grad: tf.KernelFunc = ({ inputs, backend: b }) => {
    const backend = wasmOrThrow(b);
    const { logits, targets, lse, dy } = inputs as Record<string, tf.TensorInfo>;
    const [rows, vocab] = logits.shape;
    const out = backend.makeOutput([rows, vocab], 'float32');
    addon.softmaxXentGrad(
      backend.wasm.HEAPF32,
      heapOffset(backend, logits),
      heapOffset(backend, targets),
      heapOffset(backend, lse),
      heapOffset(backend, dy),
      heapOffset(backend, out),
      rows,
      vocab,
    );
    return out;
  };
  return [
    { kernelName: XENT, backendName: 'wasm', kernelFunc: forward },
    { kernelName: XENT_GRAD, backendName: 'wasm', kernelFunc: grad },
  ];
}
