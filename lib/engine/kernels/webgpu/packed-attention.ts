import type * as tf from '@tensorflow/tfjs';
import { GROUP_INDEX, runProgram, spread, workgroupReduce, type WgslProgram } from './program.js';

/**
 * Causal attention within packed segments, without a T x T mask: each token attends to the tokens
 * of its own segment up to itself. Forward (outputs and log-sum-exp), and the two backward passes
 * (queries; keys and values), each recomputing the probabilities from the saved log-sum-exp.
 */
export const PACKED_ATTENTION = 'LlmboxPackedAttention';
export const PACKED_ATTENTION_DQ = 'LlmboxPackedAttentionDq';
export const PACKED_ATTENTION_DKV = 'LlmboxPackedAttentionDkv';

const THREADS = 64;
/** Workgroup slots (scores, or probabilities x query heads per key head): 12 KiB, under WebGPU's 16 KiB minimum. */
export const PACKED_ATTENTION_MAX_SLOTS = 1536;

const UNIFORMS = 'rows : i32, heads : i32, kvHeads : i32, d : i32,';
const HELPERS = `
  fn dotQK(qb : i32, kb : i32) -> f32 {
    var s = 0.0;
    for (var e = 0; e < uniforms.d; e++) { s += q[qb + e] * k[kb + e]; }
    return s;
  }`;
const reduce = (op: string) => workgroupReduce(op, THREADS);
/** WGSL: a query row's token i, its key head kh and its segment's start st (-1: padding or past the end). */
const QUERY_ROW = `
        let row = ${GROUP_INDEX};
        let D = uniforms.d;
        let i = row / uniforms.heads;
        let kh = (row % uniforms.heads) / (uniforms.heads / uniforms.kvHeads);
        var st = -1;
        if (row < uniforms.rows) { st = starts[i]; }`;

function base(name: string, vars: string[], rows: number, cols: number, body: string): WgslProgram {
  return {
    variableNames: vars,
    outputShape: [rows, cols],
    shaderKey: name,
    uniforms: UNIFORMS,
    workgroupSize: [THREADS, 1, 1],
    dispatch: spread(rows),
    dispatchLayout: { x: [1], y: [0] },
    getUserCode: () => body,
  };
}

/** One workgroup per (token, head): scores over its segment so far, softmax, then [output | lse]. */
const forward = (rows: number, d: number) =>
  base(
    'llmbox_packed_attention',
    ['q', 'k', 'v', 'starts'],
    rows,
    d + 1,
    `
      var<workgroup> sc : array<f32, ${PACKED_ATTENTION_MAX_SLOTS}>;
      var<workgroup> red : array<f32, ${THREADS}>;
      fn add(a : f32, b : f32) -> f32 { return a + b; }
      ${HELPERS}
      fn main() {
        ${QUERY_ROW}
        let live = st >= 0;
        let L = select(0, i - st + 1, live);
        var acc = -3.0e38;
        for (var jj = i32(localId.x); jj < L; jj += ${THREADS}) {
          let s = dotQK(row * D, ((st + jj) * uniforms.kvHeads + kh) * D);
          sc[jj] = s;
          acc = max(acc, s);
        }
        ${reduce('max')}
        let m = red[0];
        workgroupBarrier();
        acc = 0.0;
        for (var jj = i32(localId.x); jj < L; jj += ${THREADS}) {
          let e = exp(sc[jj] - m);
          sc[jj] = e;
          acc += e;
        }
        ${reduce('add')}
        let total = red[0];
        if (row < uniforms.rows) {
          for (var e = i32(localId.x); e < D; e += ${THREADS}) {
            var o = 0.0;
            for (var jj = 0; jj < L; jj++) { o += sc[jj] * v[((st + jj) * uniforms.kvHeads + kh) * D + e]; }
            result[row * (D + 1) + e] = select(0.0, o / total, live);
          }
          if (localId.x == 0u) { result[row * (D + 1) + D] = select(0.0, m + log(total), live); }
        }
      }`,
  );

/** dQ per (token, head): ds = p (dO.v - delta) over its keys, then dq = sum ds k. */
const backwardQ = (rows: number, d: number) =>
  base(
    'llmbox_packed_attention_dq',
    ['q', 'k', 'v', 'dy', 'lse', 'delta', 'starts'],
    rows,
    d,
    `
      var<workgroup> sc : array<f32, ${PACKED_ATTENTION_MAX_SLOTS}>;
      ${HELPERS}
      fn main() {
        ${QUERY_ROW}
        let L = select(0, i - st + 1, st >= 0);
        for (var jj = i32(localId.x); jj < L; jj += ${THREADS}) {
          let kb = ((st + jj) * uniforms.kvHeads + kh) * D;
          let p = exp(dotQK(row * D, kb) - lse[row]);
          var dp = 0.0;
          for (var e = 0; e < D; e++) { dp += dy[row * D + e] * v[kb + e]; }
          sc[jj] = p * (dp - delta[row]);
        }
        workgroupBarrier();
        if (row < uniforms.rows) {
          for (var e = i32(localId.x); e < D; e += ${THREADS}) {
            var g = 0.0;
            for (var jj = 0; jj < L; jj++) { g += sc[jj] * k[((st + jj) * uniforms.kvHeads + kh) * D + e]; }
            result[row * D + e] = g;
          }
        }
      }`,
  );

/** dK and dV per (token, kv head): over the later queries of its segment and every query head of the group; [dk | dv]. */
const backwardKV = (rows: number, d: number) =>
  base(
    'llmbox_packed_attention_dkv',
    ['q', 'k', 'v', 'dy', 'lse', 'delta', 'starts', 'ends'],
    rows,
    2 * d,
    `
      var<workgroup> pa : array<f32, ${PACKED_ATTENTION_MAX_SLOTS / 2}>;
      var<workgroup> da : array<f32, ${PACKED_ATTENTION_MAX_SLOTS / 2}>;
      ${HELPERS}
      fn qrow(j : i32, kh : i32, c : i32, lq : i32) -> i32 {
        let g = c / lq;
        return (j + c % lq) * uniforms.heads + kh * (uniforms.heads / uniforms.kvHeads) + g;
      }
      fn main() {
        let row = ${GROUP_INDEX};
        let D = uniforms.d;
        let j = row / uniforms.kvHeads;
        let kh = row % uniforms.kvHeads;
        var st = -1;
        var en = 0;
        if (row < uniforms.rows) { st = starts[j]; en = ends[j]; }
        let lq = select(0, en - j, st >= 0);
        let count = lq * (uniforms.heads / uniforms.kvHeads);
        let kb = (j * uniforms.kvHeads + kh) * D;
        for (var c = i32(localId.x); c < count; c += ${THREADS}) {
          let qr = qrow(j, kh, c, lq);
          let p = exp(dotQK(qr * D, kb) - lse[qr]);
          var dp = 0.0;
          for (var e = 0; e < D; e++) { dp += dy[qr * D + e] * v[kb + e]; }
          pa[c] = p;
          da[c] = p * (dp - delta[qr]);
        }
        workgroupBarrier();
        if (row < uniforms.rows) {
          for (var e = i32(localId.x); e < D; e += ${THREADS}) {
            var gk = 0.0;
            var gv = 0.0;
            for (var c = 0; c < count; c++) {
              let qr = qrow(j, kh, c, lq);
              gk += da[c] * q[qr * D + e];
              gv += pa[c] * dy[qr * D + e];
            }
            result[row * 2 * D + e] = gk;
            result[row * 2 * D + D + e] = gv;
          }
        }
      }`,
  );

const uniforms = (rows: number, heads: number, kvHeads: number, d: number) =>
  [rows, heads, kvHeads, d].map((x) => ({ type: 'int32' as const, data: [x] }));

type Inputs = Record<string, tf.TensorInfo>;

export const webgpuPackedAttentionConfigs: tf.KernelConfig[] = [
  {
    kernelName: PACKED_ATTENTION,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend }) => {
      const { q, k, v, starts } = inputs as Inputs;
      const [N, H, D] = q.shape;
      return runProgram(backend, forward(N * H, D), [q, k, v, starts], uniforms(N * H, H, k.shape[1], D));
    },
  },
  {
    kernelName: PACKED_ATTENTION_DQ,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend }) => {
      const { q, k, v, dy, lse, delta, starts } = inputs as Inputs;
      const [N, H, D] = q.shape;
      return runProgram(
        backend,
        backwardQ(N * H, D),
        [q, k, v, dy, lse, delta, starts],
        uniforms(N * H, H, k.shape[1], D),
      );
    },
  },
  {
    kernelName: PACKED_ATTENTION_DKV,
    backendName: 'webgpu',
    kernelFunc: ({ inputs, backend }) => {
      const { q, k, v, dy, lse, delta, starts, ends } = inputs as Inputs;
      const [N, H, D] = q.shape;
      const kvH = k.shape[1];
      return runProgram(
        backend,
        backwardKV(N * kvH, D),
        [q, k, v, dy, lse, delta, starts, ends],
        uniforms(N * kvH, H, kvH, D),
      );
    },
  },
];
