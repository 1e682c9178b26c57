import type * as tf from '@tensorflow/tfjs';
import { RMS_NORM } from '../rms-norm.js';
import { GROUP_INDEX, runProgram, spread, type WgslProgram } from './program.js';

const THREADS = 64;

/** RMSNorm with one workgroup per row: the sum of squares reduced in workgroup memory, then the row scaled. */
function program(rows: number, dim: number): WgslProgram {
  return {
    variableNames: ['x', 'w'],
    outputShape: [rows, dim],
    shaderKey: 'llmbox_rms_norm',
    uniforms: 'rows : i32, dim : i32, eps : f32,',
    workgroupSize: [THREADS, 1, 1],
    dispatch: spread(rows),
    dispatchLayout: { x: [1], y: [0] },
    getUserCode: () => `
      var<workgroup> partial : array<f32, ${THREADS}>;
      fn main() {
        let row = ${GROUP_INDEX};
        let dim = uniforms.dim;
        let base = row * dim;
        let live = row < uniforms.rows;
        var s = 0.0;
        if (live) {
          for (var k = i32(localId.x); k < dim; k += ${THREADS}) {
            let v = x[base + k];
            s += v * v;
          }
        }
        partial[localId.x] = s;
        workgroupBarrier();
        for (var stride = ${THREADS / 2}u; stride > 0u; stride = stride / 2u) {
          if (localId.x < stride) {
            partial[localId.x] += partial[localId.x + stride];
          }
          workgroupBarrier();
        }
        let r = inverseSqrt(partial[0] / f32(dim) + uniforms.eps);
        if (live) {
          for (var k = i32(localId.x); k < dim; k += ${THREADS}) {
            result[base + k] = x[base + k] * r * w[k];
          }
        }
      }`,
  };
}

export const webgpuRmsNormConfig: tf.KernelConfig = {
  kernelName: RMS_NORM,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, w } = inputs as Record<string, tf.TensorInfo>;
    const dim = x.shape[x.shape.length - 1];
    const rows = x.shape.reduce((a, d) => a * d, 1) / dim;
    const eps = (attrs as unknown as { eps: number }).eps;
    // A [rows, dim] result: the caller (ops.ts rmsNorm) gives it x's shape back.
    return runProgram(
      backend,
      program(rows, dim),
      [x, w],
      [
        { type: 'int32', data: [rows] },
        { type: 'int32', data: [dim] },
        { type: 'float32', data: [eps] },
      ],
    );
  },
};
