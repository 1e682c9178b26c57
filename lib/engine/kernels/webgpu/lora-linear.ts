import type * as tf from '@tensorflow/tfjs';
import { GROUP_INDEX, runProgram, type WgslProgram } from './program.js';

/** x W + s (xa) B in one pass (xa = x A, computed before): LoRA's forward without its second matmul and add. */
export const LORA_LINEAR = 'LlmboxLoraLinear';

// 32 x 32 outputs per workgroup, 4 x 4 per thread, K in tiles of 32.
const TILE = 32;
const PER = 4;
const SIDE = TILE / PER;

/**
 * One GEMM over the concatenated inner dimension [x | s xa] x [W ; B] (in + r long): the adapter's
 * rank-r update is the last r steps of the same accumulation, so y is written once.
 */
function program(n: number, out: number): WgslProgram {
  const cols = Math.ceil(out / TILE);
  const rows = Math.ceil(n / TILE);
  return {
    variableNames: ['x', 'w', 'xa', 'b'],
    outputShape: [n, out],
    shaderKey: 'llmbox_lora_linear',
    uniforms: 'n : i32, k : i32, r : i32, o : i32, scale : f32, cols : i32,',
    workgroupSize: [SIDE, SIDE, 1],
    dispatch: [Math.min(cols * rows, 65_535), Math.ceil((cols * rows) / 65_535), 1],
    dispatchLayout: { x: [1], y: [0] },
    getUserCode: () => `
      var<workgroup> tileX : array<array<f32, ${TILE}>, ${TILE}>;
      var<workgroup> tileW : array<array<f32, ${TILE}>, ${TILE}>;
      fn left(row : i32, kk : i32) -> f32 {
        if (row >= uniforms.n) { return 0.0; }
        if (kk < uniforms.k) { return x[row * uniforms.k + kk]; }
        if (kk < uniforms.k + uniforms.r) { return uniforms.scale * xa[row * uniforms.r + kk - uniforms.k]; }
        return 0.0;
      }
      fn right(kk : i32, col : i32) -> f32 {
        if (col >= uniforms.o) { return 0.0; }
        if (kk < uniforms.k) { return w[kk * uniforms.o + col]; }
        if (kk < uniforms.k + uniforms.r) { return b[(kk - uniforms.k) * uniforms.o + col]; }
        return 0.0;
      }
      fn main() {
        let group = ${GROUP_INDEX};
        let row0 = (group / uniforms.cols) * ${TILE};
        let col0 = (group % uniforms.cols) * ${TILE};
        let tx = i32(localId.x);
        let ty = i32(localId.y);
        let flat = ty * ${SIDE} + tx;
        var acc : array<array<f32, ${PER}>, ${PER}>;
        let inner = uniforms.k + uniforms.r;
        for (var t = 0; t < inner; t += ${TILE}) {
          for (var e = 0; e < ${(TILE * TILE) / (SIDE * SIDE)}; e++) {
            let idx = flat + e * ${SIDE * SIDE};
            let i = idx / ${TILE};
            let j = idx % ${TILE};
            tileX[i][j] = left(row0 + i, t + j);
            tileW[i][j] = right(t + i, col0 + j);
          }
          workgroupBarrier();
          for (var kk = 0; kk < ${TILE}; kk++) {
            var a : array<f32, ${PER}>;
            for (var i = 0; i < ${PER}; i++) { a[i] = tileX[ty * ${PER} + i][kk]; }
            for (var j = 0; j < ${PER}; j++) {
              let bv = tileW[kk][tx * ${PER} + j];
              for (var i = 0; i < ${PER}; i++) { acc[i][j] += a[i] * bv; }
            }
          }
          workgroupBarrier();
        }
        for (var i = 0; i < ${PER}; i++) {
          let row = row0 + ty * ${PER} + i;
          for (var j = 0; j < ${PER}; j++) {
            let col = col0 + tx * ${PER} + j;
            if (row < uniforms.n && col < uniforms.o) { result[row * uniforms.o + col] = acc[i][j]; }
          }
        }
      }`,
  };
}

export const webgpuLoraLinearConfig: tf.KernelConfig = {
  kernelName: LORA_LINEAR,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, w, xa, b } = inputs as Record<string, tf.TensorInfo>;
    const [n, k] = x.shape;
    const [r, o] = b.shape;
    const scale = (attrs as unknown as { scale: number }).scale;
    return runProgram(
      backend,
      program(n, o),
      [x, w, xa, b],
      [
        { type: 'int32', data: [n] },
        { type: 'int32', data: [k] },
        { type: 'int32', data: [r] },
        { type: 'int32', data: [o] },
        { type: 'float32', data: [scale] },
        { type: 'int32', data: [Math.ceil(o / TILE)] },
      ],
    );
  },
};
