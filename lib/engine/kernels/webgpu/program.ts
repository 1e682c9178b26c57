import type * as tf from '@tensorflow/tfjs';

/**
 * The part of tfjs-backend-webgpu's program interface llmbox's kernels use: WGSL for `main()`, the
 * input buffers by name, and uniforms (declared in `uniforms`, values passed with each run).
 */
export interface WgslProgram {
  variableNames: string[];
  outputShape: number[];
  shaderKey: string;
  uniforms: string;
  workgroupSize: [number, number, number];
  dispatch: [number, number, number];
  /** Two entries: main() takes no index; kernels place work by workgroupId and localId. */
  dispatchLayout: { x: number[]; y: number[] };
  getUserCode(): string;
}

export interface Uniform {
  type: 'int32' | 'float32';
  data: number[];
}

interface WebGpuBackend {
  runWebGPUProgram(program: WgslProgram, inputs: tf.TensorInfo[], dtype: 'float32', uniforms: Uniform[]): tf.TensorInfo;
}

export function runProgram(
  backend: unknown,
  program: WgslProgram,
  inputs: tf.TensorInfo[],
  uniforms: Uniform[],
): tf.TensorInfo {
  return (backend as WebGpuBackend).runWebGPUProgram(program, inputs, 'float32', uniforms);
}

/** Workgroups [x, y] covering n groups along x, within the per-dimension limit (65,535). */
export function spread(n: number): [number, number, number] {
  const x = Math.min(n, 65_535);
  return [x, Math.ceil(n / x), 1];
}

/** The linear workgroup number in a spread dispatch (WGSL). */
export const GROUP_INDEX = 'i32(workgroupId.y * numWorkgroups.x + workgroupId.x)';

/**
 * WGSL: a tree reduction of each thread's `acc` over a workgroup of `threads` (a power of two) into
 * red[0], with `op` a two-argument function (max, or an add defined by the kernel); needs
 * `var<workgroup> red : array<f32, threads>`.
 */
export function workgroupReduce(op: string, threads: number): string {
  return `
        red[localId.x] = acc;
        workgroupBarrier();
        for (var stride = ${threads / 2}u; stride > 0u; stride = stride / 2u) {
          if (localId.x < stride) { red[localId.x] = ${op}(red[localId.x], red[localId.x + stride]); }
          workgroupBarrier();
        }`;
}
