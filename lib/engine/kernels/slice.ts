import * as tf from '@tensorflow/tfjs';
import { asWasmBackend } from '../wasm-heap.js';

/**
 * Slice for tfjs-wasm that copies straight between heap views. tfjs-wasm's own Slice first reads
 * the whole input out of the heap (a full copy: ~100 ms to take 256 rows of a 3000x3000 mask), which
 * made attention over long prompts and prefix-cache splits slow. Runs of contiguous elements are
 * copied with one `copyWithin` each; strings go to the original kernel.
 */
export function fastSliceConfig(original: tf.KernelConfig): tf.KernelConfig {
  const kernelFunc: tf.KernelFunc = (args) => {
    const backend = asWasmBackend(args.backend);
    const x = args.inputs.x as tf.TensorInfo;
    if (!backend || x.shape.length === 0 || x.dtype === 'string' || x.dtype === 'complex64')
      return original.kernelFunc(args);
    const { begin: b0, size: s0 } = args.attrs as unknown as { begin: number | number[]; size?: number | number[] };
    const [begin, size] = tf.slice_util.parseSliceParams(x as unknown as tf.Tensor, b0, s0);
    const out = backend.makeOutput(size, x.dtype);
    const total = size.reduce((a, n) => a * n, 1);
    if (total === 0) return out;
    const src = backend.typedArrayFromHeap(x),
      dst = backend.typedArrayFromHeap(out);
    const rank = x.shape.length;
    const strides = new Array<number>(rank);
    for (let d = rank - 1, s = 1; d >= 0; d--) {
      strides[d] = s;
      s *= x.shape[d];
    }
    // Trailing dimensions taken whole, plus the first partial one, form contiguous runs.
    let inner = rank - 1,
      run = 1;
    while (inner > 0 && begin[inner] === 0 && size[inner] === x.shape[inner]) run *= size[inner--];
    run *= size[inner];
    const srcBase = src.byteOffset / src.BYTES_PER_ELEMENT,
      dstBase = dst.byteOffset / dst.BYTES_PER_ELEMENT;
    const heap = new (src.constructor as Float32ArrayConstructor)(src.buffer);
    const idx = new Array<number>(inner).fill(0);
    for (let o = 0; o < total; o += run) {
      let from = begin[inner] * strides[inner];
      for (let d = 0; d < inner; d++) from += (begin[d] + idx[d]) * strides[d];
      heap.copyWithin(dstBase + o, srcBase + from, srcBase + from + run);
      for (let d = inner - 1; d >= 0; d--) {
        if (++idx[d] < size[d]) break;
        idx[d] = 0;
      }
    }
    return out;
  };
  return { kernelName: tf.Slice, backendName: 'wasm', kernelFunc };
}
