import type * as tf from '@tensorflow/tfjs';
import { GROUP_INDEX, runProgram, spread, workgroupReduce, type WgslProgram } from './program.js';

/** Queries over one shared prefix's keys and values (read in place for every row of the batch) plus their own. */
export const PREFIX_ATTENTION = 'LlmboxPrefixAttention';

const THREADS = 64;
/** Key slots a row's scores may span (prefix + own): 12 KiB of workgroup memory, under WebGPU's 16 KiB minimum. */
export const PREFIX_ATTENTION_MAX_SLOTS = 3072;

/**
 * One workgroup per query row: its scores over [prefix | own] keys into workgroup memory, the
 * softmax by two tree reductions (max, then sum), then the output dimensions from the weighted values.
 * The prefix is [1, kvH, P, D]: every batch row reads the same buffer, no copy per row.
 */
function program(rows: number, d: number): WgslProgram {
  const reduce = (op: string) => workgroupReduce(op, THREADS);
  return {
    variableNames: ['q', 'pk', 'pv', 'k', 'v', 'mask'],
    outputShape: [rows, d],
    shaderKey: 'llmbox_prefix_attention',
    uniforms: 'rows : i32, heads : i32, r : i32, tc : i32, p : i32, c : i32, d : i32, cap : f32,',
    workgroupSize: [THREADS, 1, 1],
    dispatch: spread(rows),
    dispatchLayout: { x: [1], y: [0] },
    getUserCode: () => `
      var<workgroup> sc : array<f32, ${PREFIX_ATTENTION_MAX_SLOTS}>;
      var<workgroup> red : array<f32, ${THREADS}>;
      fn add(a : f32, b : f32) -> f32 { return a + b; }
      fn main() {
        let row = ${GROUP_INDEX};
        let live = row < uniforms.rows;
        let D = uniforms.d;
        let P = uniforms.p;
        let C = uniforms.c;
        let S = P + C;
        let bh = row / uniforms.r;
        let b = bh / uniforms.heads;
        let h = bh % uniforms.heads;
        let t = (row % uniforms.r) % uniforms.tc;
        let qb = row * D;
        var acc = -3.0e38;
        if (live) {
          for (var j = i32(localId.x); j < S; j += ${THREADS}) {
            var s = 0.0;
            if (j < P) {
              let kb = (h * P + j) * D;
              for (var e = 0; e < D; e++) { s += q[qb + e] * pk[kb + e]; }
            } else {
              let kb = (bh * C + j - P) * D;
              for (var e = 0; e < D; e++) { s += q[qb + e] * k[kb + e]; }
            }
            if (uniforms.cap > 0.0) { s = uniforms.cap * tanh(s / uniforms.cap); }
            s += mask[(b * uniforms.tc + t) * S + j];
            sc[j] = s;
            acc = max(acc, s);
          }
        }
        ${reduce('max')}
        let m = red[0];
        workgroupBarrier();
        acc = 0.0;
        if (live) {
          for (var j = i32(localId.x); j < S; j += ${THREADS}) {
            let e = exp(sc[j] - m);
            sc[j] = e;
            acc += e;
          }
        }
        ${reduce('add')}
        let total = red[0];
        if (live) {
          for (var e = i32(localId.x); e < D; e += ${THREADS}) {
            var o = 0.0;
            for (var j = 0; j < P; j++) { o += sc[j] * pv[(h * P + j) * D + e]; }
            for (var j = 0; j < C; j++) { o += sc[P + j] * v[(bh * C + j) * D + e]; }
            result[qb + e] = o / total;
          }
        }
      }`,
  };
}

export const webgpuPrefixAttentionConfig: tf.KernelConfig = {
  kernelName: PREFIX_ATTENTION,
  backendName: 'webgpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { q, pk, pv, k, v, mask } = inputs as Record<string, tf.TensorInfo>;
    const [B, H, R, D] = q.shape;
    const P = pk.shape[2],
      C = k.shape[2],
      Tc = mask.shape[2];
    const cap = (attrs as unknown as { softcap: number }).softcap;
    // [B*H*R, D]: the caller gives it q's shape back.
    return runProgram(
      backend,
      program(B * H * R, D),
      [q, pk, pv, k, v, mask],
      [
        { type: 'int32', data: [B * H * R] },
        { type: 'int32', data: [H] },
        { type: 'int32', data: [R] },
        { type: 'int32', data: [Tc] },
        { type: 'int32', data: [P] },
        { type: 'int32', data: [C] },
        { type: 'int32', data: [D] },
        { type: 'float32', data: [cap] },
      ],
    );
  },
};
