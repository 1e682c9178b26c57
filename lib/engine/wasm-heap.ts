import * as tf from '@tensorflow/tfjs';

/**
 * The parts of tfjs-wasm's backend that native kernels need. tfjs does not export these types,
 * so they are described here and checked at run time in `asWasmBackend`.
 */
export interface WasmBackendLike {
  wasm: { HEAPF32: Float32Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  /** A view of a tensor's memory in the heap, typed by its dtype. */
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

export function asWasmBackend(backend: unknown): WasmBackendLike | null {
  const b = backend as Partial<WasmBackendLike> | null;
  if (b && b.wasm && b.dataIdMap && typeof b.makeOutput === 'function' && typeof b.typedArrayFromHeap === 'function')
    return b as WasmBackendLike;
  return null;
}

/** Float32 element offset of a tensor inside the wasm heap. */
export function heapOffset(backend: WasmBackendLike, t: tf.TensorInfo): number {
  const d = backend.dataIdMap.get(t.dataId);
  if (!d) throw new Error('llmbox: tensor is not on the wasm backend');
  return d.memoryOffset / 4;
}
