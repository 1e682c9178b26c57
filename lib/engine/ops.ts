import * as tf from '@tensorflow/tfjs';
import { nativeAddon } from './index.js';
import { XENT, XENT_GRAD } from './kernels/cross-entropy.js';
import { EMBEDDING_GRAD } from './kernels/embedding-grad.js';
import { ROPE } from './kernels/rope.js';
import { QUANT_GATHER, QUANT_MATMUL } from './kernels/quant-matmul.js';
import { RMS_NORM } from './kernels/rms-norm.js';
import { LORA_LINEAR } from './kernels/webgpu/lora-linear.js';
import { PREFIX_ATTENTION, PREFIX_ATTENTION_MAX_SLOTS } from './kernels/webgpu/prefix-attention.js';
import {
  PACKED_ATTENTION,
  PACKED_ATTENTION_DKV,
  PACKED_ATTENTION_DQ,
  PACKED_ATTENTION_MAX_SLOTS,
} from './kernels/webgpu/packed-attention.js';

/** The gradient tfjs hands a single-output custom gradient. */
/**
 * Whether tfjs is recording operations for a gradient (inside tf.grad, valueAndGrads). Outside, the
 * fused kernels run bare: a customGrad wrapper costs more than a tiny model's kernel does.
 */
/** Whether the active backend has a kernel llmbox registered (native on wasm, WGSL on webgpu). */
export function hasKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}

function recording(): boolean {
  return (tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn();
}

function single(dy: tf.Tensor | tf.Tensor[]): tf.Tensor {
  return Array.isArray(dy) ? dy[0] : dy;
}

/**
 * Row lookup with a gradient that every backend can run. tfjs differentiates gather through
 * UnsortedSegmentSum, which tfjs-wasm lacks; where it is missing the table gradient is a
 * scatter-add, in the native add-on when active, else on the host.
 */
export function embedding(table: tf.Tensor2D, ids: tf.Tensor): tf.Tensor {
  if (tf.getKernel('UnsortedSegmentSum', tf.getBackend())) return tf.gather(table, ids);
  const [vocab, dim] = table.shape;
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [tableT, idsT, save] = args as [tf.Tensor2D, tf.Tensor, tf.GradSaveFunc];
    save([idsT]);
    return {
      value: tf.gather(tableT, idsT),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const dyT = single(dy);
        if (nativeAddon()) {
          const g = tf
            .engine()
            .runKernel(EMBEDDING_GRAD, { ids: saved[0], dy: dyT }, { vocab, dim } as unknown as tf.NamedAttrMap);
          return [g as tf.Tensor, tf.zerosLike(saved[0])];
        }
        const g = dyT.dataSync() as Float32Array;
        const idx = saved[0].dataSync();
        const out = new Float32Array(vocab * dim);
        for (let i = 0; i < idx.length; i++) {
          const row = idx[i] * dim,
            src = i * dim;
          for (let j = 0; j < dim; j++) out[row + j] += g[src + j];
        }
        return [tf.tensor2d(out, [vocab, dim]), tf.zerosLike(saved[0])];
      },
    };
  });
  return f(table, ids);
}

/** Entries of a vector by index, differentiably on every backend (embedding's gather). */
export function pickEntries(v: tf.Tensor1D, at: number[]): tf.Tensor1D {
  return embedding(v.reshape([v.shape[0], 1]) as tf.Tensor2D, tf.tensor1d(at, 'int32')).reshape([
    at.length,
  ]) as tf.Tensor1D;
}

/** RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * weight. */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor1D, eps: number): tf.Tensor {
  if (!hasKernel(RMS_NORM) || x.dtype !== 'float32') return rmsNormReference(x, weight, eps);
  // The kernels may answer [rows, dim] (webgpu's): x's shape is given back.
  const kernel = (v: tf.Tensor, w: tf.Tensor1D) => {
    const y = tf.engine().runKernel(RMS_NORM, { x: v, w }, { eps } as unknown as tf.NamedAttrMap) as tf.Tensor;
    return y.rank === v.rank ? y : tf.reshape(y, v.shape);
  };
  if (!recording()) return kernel(x, weight);
  // The native kernel forward; the gradient composed from x and w (training is not per-kernel bound):
  // with r = 1/rms(x) and g = dy * w, dx = r g - x r^3 mean(g x), dw = sum over rows of dy x r.
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [v, w, save] = args as [tf.Tensor, tf.Tensor1D, tf.GradSaveFunc];
    save([v, w]);
    return {
      value: kernel(v, w),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const [xs, ws] = saved;
          const d = single(dy);
          const r = tf.rsqrt(tf.add(tf.mean(tf.square(xs), -1, true), eps));
          const g = tf.mul(d, ws);
          const dx = tf.sub(tf.mul(r, g), tf.mul(tf.mul(xs, tf.pow(r, 3)), tf.mean(tf.mul(g, xs), -1, true)));
          const dw = tf.sum(tf.reshape(tf.mul(tf.mul(d, xs), r), [-1, ws.shape[0]]), 0);
          return [dx, dw];
        }),
    };
  });
  return f(x, weight) as tf.Tensor;
}

/** The composed definition rmsNorm is tested against (and runs where there is no add-on). */
export function rmsNormReference(x: tf.Tensor, weight: tf.Tensor1D, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const ms = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, eps))), weight);
  });
}

/** LayerNorm over the last axis: (x - mean) / sqrt(var + eps) * weight + bias (biased variance, as torch). */
export function layerNorm(x: tf.Tensor, weight: tf.Tensor1D, bias: tf.Tensor1D, eps: number): tf.Tensor {
  return tf.tidy(() => {
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), weight), bias);
  });
}

/** gelu with the tanh approximation (gelu_pytorch_tanh, GPT-2's gelu_new). */
export function geluTanh(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const inner = tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.pow(x, 3))));
    return tf.mul(tf.mul(0.5, x), tf.add(1, tf.tanh(inner)));
  });
}

/** Exact gelu, x * Phi(x) = x/2 (1 + erf(x / sqrt 2)) (GPT-NeoX's "gelu"). */
export function gelu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(0.5, x), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))));
}

/** gelu(gate) * up with the tanh approximation of gelu (Gemma's gelu_pytorch_tanh). */
export function geglu(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(geluTanh(gate), up));
}

/** silu(gate) * up, the SwiGLU feed-forward activation. */
export function swiglu(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(gate, tf.sigmoid(gate)), up));
}

/**
 * Per-row cross-entropy -log softmax(logits)[target], [rows, vocab] x [rows] -> [rows]. Uses the
 * native one-pass kernel (and its gradient, softmax - onehot) when active, else the composed reference.
 */
export function crossEntropy(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Tensor1D {
  if (!nativeAddon()) return crossEntropyReference(logits, targets);
  // The kernels read targets as int32 on the heap; cast once for both passes.
  const ids = targets.toInt();
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, t, save] = args as [tf.Tensor2D, tf.Tensor1D, tf.GradSaveFunc];
    const [loss, lse] = tf.engine().runKernel(XENT, { logits: x, targets: t }) as tf.Tensor[];
    save([x, t, lse]);
    return {
      value: loss,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [xs, ts, lses] = saved;
        const g = tf.engine().runKernel(XENT_GRAD, { logits: xs, targets: ts, lse: lses, dy: single(dy) }) as tf.Tensor;
        return [g, tf.zerosLike(ts)];
      },
    };
  });
  return f(logits, ids) as tf.Tensor1D;
}

/** tfjs's own softmax cross-entropy, per row: the fallback, and the reference the native kernel is tested against. */
export function crossEntropyReference(logits: tf.Tensor2D, targets: tf.Tensor1D): tf.Tensor1D {
  return tf.tidy(() => {
    const labels = tf.oneHot(targets.toInt(), logits.shape[1]);
    return tf.losses.softmaxCrossEntropy(labels, logits, undefined, 0, tf.Reduction.NONE) as tf.Tensor1D;
  });
}

/**
 * rotate_half RoPE: x * cos + swapHalves(x) * sin, for x [B, T, heads, D] and cos, sin [B, T, 1, D]
 * with sin's first half negated (see models/rope.ts). The map is a rotation, so its gradient is
 * the inverse rotation, rope(dy, cos, -sin): one pass instead of autodiff through split and concat.
 */
export function rope(x: tf.Tensor4D, cos: tf.Tensor4D, sin: tf.Tensor4D): tf.Tensor4D {
  const native = nativeAddon() !== null;
  const apply = (v: tf.Tensor4D, c: tf.Tensor4D, s: tf.Tensor4D): tf.Tensor4D =>
    native ? (tf.engine().runKernel(ROPE, { x: v, cos: c, sin: s }) as tf.Tensor4D) : ropeReference(v, c, s);
  if (!recording()) return apply(x, cos, sin);
  // The tables are inputs (with zero gradients) so that tfjs keeps them alive for the backward pass.
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [v, c, s, save] = args as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D, tf.GradSaveFunc];
    save([c, s]);
    return {
      value: apply(v, c, s),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [cs, ss] = saved as [tf.Tensor4D, tf.Tensor4D];
        const dx = apply(single(dy) as tf.Tensor4D, cs, tf.neg(ss));
        return [dx, tf.zerosLike(cs), tf.zerosLike(ss)];
      },
    };
  });
  return f(x, cos, sin) as tf.Tensor4D;
}

/** The composed definition rope is tested against. */
export function ropeReference(x: tf.Tensor4D, cos: tf.Tensor4D, sin: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const [x1, x2] = tf.split(x, 2, 3);
    return tf.add(tf.mul(x, cos), tf.mul(tf.concat([x2, x1], 3), sin)) as tf.Tensor4D;
  });
}

/**
 * LoRA linear layer, y = x W + scale (xd A) B, as one op whose gradient covers x, xd, A and B only:
 * the frozen base W (captured, not an input) gets no gradient, and x A is kept from the forward pass
 * for B's gradient. `xd` is the adapter's input (x after LoRA dropout; pass x itself without dropout).
 * W may be a function that materialises it (QLoRA: dequantized from NF4): it is then called in the
 * forward pass and again in the backward pass, so the float32 weight never outlives either.
 * Shapes: x, xd [N, in], W [in, out], A [in, r], B [r, out].
 */
export function loraLinear(
  x: tf.Tensor2D,
  xd: tf.Tensor2D,
  W: tf.Tensor2D | (() => tf.Tensor2D),
  A: tf.Tensor2D,
  B: tf.Tensor2D,
  scale: number,
): tf.Tensor2D {
  const weight = (use: (w: tf.Tensor2D) => tf.Tensor) => {
    if (typeof W !== 'function') return use(W);
    const w = W();
    const out = use(w);
    w.dispose();
    return out;
  };
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xi, xdi, a, b, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
    const xa = tf.matMul(xdi, a);
    save([xdi, a, b, xa]);
    const fused = hasKernel(LORA_LINEAR);
    return {
      value: fused
        ? weight(
            (w) =>
              tf
                .engine()
                .runKernel(LORA_LINEAR, { x: xi, w, xa, b }, { scale } as unknown as tf.NamedAttrMap) as tf.Tensor,
          )
        : tf.add(
            weight((w) => tf.matMul(xi, w)),
            tf.mul(tf.matMul(xa, b), scale),
          ),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const g = single(dy) as tf.Tensor2D;
        const [xds, as, bs, xas] = saved as tf.Tensor2D[];
        const gb = tf.mul(tf.matMul(g, bs, false, true), scale); // dL/d(xd A), [N, r]
        return [
          weight((w) => tf.matMul(g, w, false, true)),
          tf.matMul(gb, as, false, true),
          tf.matMul(xds, gb, true, false),
          tf.mul(tf.matMul(xas, g, true, false), scale),
        ];
      },
    };
  });
  return f(x, xd, A, B) as tf.Tensor2D;
}

/** LoRA from plain ops (autodiff does the rest): the reference loraLinear is tested against. */
export function loraLinearReference(
  x: tf.Tensor2D,
  xd: tf.Tensor2D,
  W: tf.Tensor2D,
  A: tf.Tensor2D,
  B: tf.Tensor2D,
  scale: number,
): tf.Tensor2D {
  return tf.add(tf.matMul(x, W), tf.mul(tf.matMul(tf.matMul(xd, A), B), scale));
}

/** A weight [n, k] (Hugging Face's [out, in]) held outside the tensor heap in a ggml storage type. */
export interface PackedMatrix {
  weights: Uint8Array;
  /** ggml type: 0 f32, 1 f16, 30 bf16, 8 q8_0, 2 q4_0, 3 q4_1; or llmbox's 256 q4_z. */
  type: number;
  n: number;
  k: number;
  /**
   * Where the stored columns come from: column c holds input inputOrder[c] (GPTQ's act-order, its
   * groups made whole blocks); products gather x to match. Absent: the inputs' own order.
   */
  inputOrder?: Int32Array;
  /** The weight as float32 [n, k] in its stored column order (for backends without the native kernel, and for gradients). */
  decode(): Float32Array;
}

/** The kernel attributes of a packed matrix (see kernels/quant-matmul.ts). */
function packedAttrs(w: PackedMatrix): tf.NamedAttrMap {
  return { weights: w.weights, type: w.type, n: w.n, k: w.k, inputOrder: w.inputOrder } as unknown as tf.NamedAttrMap;
}

/** Types whose products take their input rounded by roundActivations: q8_0, q4_0, q4_1, q4_z. */
const ROUNDS_INPUT = new Set([8, 2, 3, 256]);

/**
 * x [rows, k] rounded to 8 bits per block of 32 along k, as llama.cpp rounds the input of its quantized
 * dot products: d = max|x| / 127 per block, x' = round(x / d) d (round half to even). The native
 * kernel does the same in integers (native/llmbox_native.c, round_input_row).
 */
export function roundActivations(x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const [rows, k] = x.shape;
    const blocks = x.reshape([rows, k / 32, 32]);
    const d = tf.div(tf.max(tf.abs(blocks), -1, true), 127);
    const inv = tf.where(tf.greater(d, 0), tf.div(1, d), tf.zerosLike(d));
    return tf.mul(tf.round(tf.mul(blocks, inv)), d).reshape([rows, k]) as tf.Tensor2D;
  });
}

/**
 * x [rows, k] times W^T for a packed W [n, k]: the native kernel reads W in its stored type (decoding
 * each row once per call), elsewhere W is decoded for the call; q8_0/q4_x products take x rounded
 * (roundActivations) on every path. The gradient covers x only (a packed base is frozen): dx = dy W
 * (straight through the rounding), with W decoded for the backward pass and freed after it. A matrix
 * with an input order multiplies x's columns in that order: the kernel gathers them as it rounds them.
 */
export function packedMatMul(x: tf.Tensor2D, w: PackedMatrix): tf.Tensor2D {
  const order = w.inputOrder;
  const dense = () => tf.tensor2d(w.decode(), [w.n, w.k]);
  const forward = (v: tf.Tensor2D): tf.Tensor2D => {
    if (nativeAddon()) return tf.engine().runKernel(QUANT_MATMUL, { x: v }, packedAttrs(w)) as tf.Tensor2D;
    return tf.tidy(() => {
      const xs = order ? tf.gather(v, tf.tensor1d(order, 'int32'), 1) : v;
      return tf.matMul(ROUNDS_INPUT.has(w.type) ? roundActivations(xs) : xs, dense(), false, true);
    });
  };
  if (!recording()) return forward(x);
  // dx = dy W, its columns put back in the inputs' order.
  const inverse = order && new Int32Array(order.length);
  order?.forEach((from, c) => (inverse![from] = c));
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => ({
    value: forward(args[0] as tf.Tensor2D),
    gradFunc: (dy: tf.Tensor | tf.Tensor[]) =>
      tf.tidy(() => {
        const dx = tf.matMul(single(dy) as tf.Tensor2D, dense());
        return inverse ? tf.gather(dx, tf.tensor1d(inverse, 'int32'), 1) : dx;
      }),
  }));
  return f(x) as tf.Tensor2D;
}

/** Rows of a packed embedding [vocab, k] for int32 ids (any shape, flattened): [N, k]. Frozen: no gradient. */
export function packedGather(ids: tf.Tensor, w: PackedMatrix): tf.Tensor2D {
  const flat = ids.toInt().reshape([-1]);
  if (nativeAddon()) return tf.engine().runKernel(QUANT_GATHER, { ids: flat }, packedAttrs(w)) as tf.Tensor2D;
  return tf.tidy(() => tf.gather(tf.tensor2d(w.decode(), [w.n, w.k]), flat) as tf.Tensor2D);
}

/**
 * A 2-D tensor's transpose as host data, for saving: by the backend, or on webgpu from the tensor's
 * host copy (readableOnHost first), since a new GPU tensor cannot be read synchronously there.
 */
export function transposedData(t: tf.Tensor): { shape: number[]; data: Float32Array } {
  const [r, c] = t.shape;
  if (tf.getBackend() !== 'webgpu') {
    const x = tf.transpose(t);
    const data = x.dataSync() as Float32Array;
    x.dispose();
    return { shape: [c, r], data };
  }
  return { shape: [c, r], data: transposeHost(t.dataSync(), r, c) };
}

/** A row-major [r, c] matrix's values as [c, r], on the host. */
export function transposeHost(src: ArrayLike<number>, r: number, c: number): Float32Array {
  const out = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = src[i * c + j];
  return out;
}

/**
 * Attention of a batch's queries over one shared prefix's keys and values ([1, kvH, P, D], read as is
 * by every row) and their own keys [B, kvH, C, D], in one softmax: option scoring and generation over
 * a cached prefix. q [B, kvH, group x Tc, D] (group-major rows, pre-scaled), mask [B, 1, Tc, P + C]
 * additive; optional soft-capping of the scores. Forward only (nothing trains through a cached prefix).
 */
export function prefixAttention(
  q: tf.Tensor4D,
  prefix: { keys: tf.Tensor4D; values: tf.Tensor4D },
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  mask: tf.Tensor4D,
  softcap: number | null = null,
): tf.Tensor4D {
  const slots = prefix.keys.shape[2] + k.shape[2];
  if (hasKernel(PREFIX_ATTENTION) && !recording() && slots <= PREFIX_ATTENTION_MAX_SLOTS) {
    const out = tf.engine().runKernel(PREFIX_ATTENTION, { q, pk: prefix.keys, pv: prefix.values, k, v, mask }, {
      softcap: softcap ?? 0,
    } as unknown as tf.NamedAttrMap) as tf.Tensor;
    return tf.reshape(out, q.shape) as tf.Tensor4D;
  }
  return prefixAttentionReference(q, prefix, k, v, mask, softcap);
}

/**
 * Attention scores [B, kvH, group * T, S] (a key head's query heads stacked group-major) plus a mask
 * [B or 1, 1, T, S] shared by every head: broadcast through a 5-D view rather than tf.tile, whose
 * tfjs-wasm kernel took 40% of HellaSwag's scoring time on stories260K.
 */
export function addHeadMask(scores: tf.Tensor4D, mask: tf.Tensor4D, group: number): tf.Tensor4D {
  if (group === 1) return tf.add(scores, mask);
  const [B, H, GT, S] = scores.shape;
  const grouped = tf.add(
    scores.reshape([B, H, group, GT / group, S]),
    mask.reshape([mask.shape[0], 1, 1, GT / group, S]),
  );
  return grouped.reshape([B, H, GT, S]);
}

/** prefixAttention from composed ops: the prefix's keys broadcast over the batch in the matmuls. */
export function prefixAttentionReference(
  q: tf.Tensor4D,
  prefix: { keys: tf.Tensor4D; values: tf.Tensor4D },
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  mask: tf.Tensor4D,
  softcap: number | null = null,
): tf.Tensor4D {
  return tf.tidy(() => {
    const P = prefix.keys.shape[2],
      C = k.shape[2];
    const group = q.shape[2] / mask.shape[2];
    const scores = (a: tf.Tensor, b: tf.Tensor) => {
      const s = tf.matMul(a, b, false, true);
      return softcap ? tf.mul(tf.tanh(tf.div(s, softcap)), softcap) : s;
    };
    const probs = tf.softmax(
      addHeadMask(tf.concat([scores(q, prefix.keys), scores(q, k)], 3) as tf.Tensor4D, mask, group),
    );
    // Two slices, not tf.split: tfjs-wasm's SplitV copies the whole input per part.
    const pShared = probs.slice([0, 0, 0, 0], [-1, -1, -1, P]);
    const pOwn = probs.slice([0, 0, 0, P], [-1, -1, -1, C]);
    return tf.add(tf.matMul(pShared, prefix.values), tf.matMul(pOwn, v)) as tf.Tensor4D;
  });
}

/** The tensors' values, read asynchronously (every backend, webgpu included), then the tensors disposed. */
export async function takeData(tensors: tf.Tensor[]): Promise<Float32Array[]> {
  try {
    return (await Promise.all(tensors.map((t) => t.data()))) as Float32Array[];
  } finally {
    tf.dispose(tensors);
  }
}

/** Each token's segment as flat [start, end) (row * T + t; -1 for padding), from a batch's segment ids. */
export function segmentBounds(segments: number[][]): { starts: Int32Array; ends: Int32Array; longest: number } {
  const T = segments[0]?.length ?? 0;
  const starts = new Int32Array(segments.length * T).fill(-1),
    ends = new Int32Array(segments.length * T);
  let longest = 0;
  segments.forEach((row, b) => {
    for (let t = 0; t < T;) {
      let e = t + 1;
      while (e < T && row[e] === row[t]) e++;
      if (row[t] !== 0) {
        starts.fill(b * T + t, b * T + t, b * T + e);
        ends.fill(b * T + e, b * T + t, b * T + e);
        longest = Math.max(longest, e - t);
      }
      t = e;
    }
  });
  return { starts, ends, longest };
}

/** Whether packedAttention runs as the fused kernel for segments this long with this many query heads per key head. */
export function packedAttentionFused(longest: number, group: number): boolean {
  return hasKernel(PACKED_ATTENTION) && longest * group <= PACKED_ATTENTION_MAX_SLOTS / 2;
}

/**
 * Causal attention within packed segments with no T x T mask: q [N, heads, D] (pre-scaled), k and v
 * [N, kvHeads, D] over the N = rows x T tokens of a batch; token i sees the tokens of its segment up
 * to itself. The webgpu kernels compute it and its gradients for q, k and v (the probabilities are
 * recomputed from the saved log-sum-exp); elsewhere, and for longer segments, packedAttentionReference.
 */
export function packedAttention(
  q: tf.Tensor3D,
  k: tf.Tensor3D,
  v: tf.Tensor3D,
  bounds: { starts: Int32Array; ends: Int32Array; longest: number },
): tf.Tensor3D {
  const group = q.shape[1] / k.shape[1];
  if (!packedAttentionFused(bounds.longest, group)) return packedAttentionReference(q, k, v, bounds.starts);
  const [N, H, D] = q.shape;
  const starts = tf.tensor1d(bounds.starts, 'int32'),
    ends = tf.tensor1d(bounds.ends, 'int32');
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [qi, ki, vi, save] = args as [tf.Tensor3D, tf.Tensor3D, tf.Tensor3D, tf.GradSaveFunc];
    const both = tf.engine().runKernel(PACKED_ATTENTION, { q: qi, k: ki, v: vi, starts }) as tf.Tensor2D;
    const o = tf.reshape(tf.slice(both, [0, 0], [-1, D]), [N, H, D]);
    const lse = tf.reshape(tf.slice(both, [0, D], [-1, 1]), [N * H]);
    // The segment bounds too: tensors the gradient needs must be saved, or the forward's scope frees them.
    save([qi, ki, vi, o, lse, starts, ends]);
    return {
      value: o,
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) =>
        tf.tidy(() => {
          const [qs, ks, vs, os, ls, st, en] = saved;
          const g = single(dy);
          const delta = tf.reshape(tf.sum(tf.mul(g, os), -1), [N * H]);
          const ins = { q: qs, k: ks, v: vs, dy: g, lse: ls, delta, starts: st };
          const dq = tf.engine().runKernel(PACKED_ATTENTION_DQ, ins) as tf.Tensor;
          const dkv = tf.engine().runKernel(PACKED_ATTENTION_DKV, { ...ins, ends: en }) as tf.Tensor2D;
          const kv = ks.shape as [number, number, number];
          return [
            tf.reshape(dq, qs.shape),
            tf.reshape(tf.slice(dkv, [0, 0], [-1, D]), kv),
            tf.reshape(tf.slice(dkv, [0, D], [-1, D]), kv),
          ];
        }),
    };
  });
  return f(q, k, v) as tf.Tensor3D;
}

/** packedAttention from composed ops over one N x N mask (the definition the kernels are tested against). */
export function packedAttentionReference(
  q: tf.Tensor3D,
  k: tf.Tensor3D,
  v: tf.Tensor3D,
  starts: Int32Array,
): tf.Tensor3D {
  return tf.tidy(() => {
    const [N, H, D] = q.shape;
    const kvH = k.shape[1],
      group = H / kvH;
    const mask = new Float32Array(N * N).fill(-1e9);
    for (let i = 0; i < N; i++) for (let j = starts[i]; j >= 0 && j <= i; j++) mask[i * N + j] = 0;
    const qh = tf.transpose(tf.reshape(q, [N, kvH, group, D]), [1, 2, 0, 3]); // [kvH, group, N, D]
    const kh = tf.expandDims(tf.transpose(k, [1, 0, 2]), 1); // [kvH, 1, N, D]
    const vh = tf.expandDims(tf.transpose(v, [1, 0, 2]), 1);
    const s = tf.add(tf.matMul(qh, tf.tile(kh, [1, group, 1, 1]), false, true), tf.tensor2d(mask, [N, N]));
    const o = tf.matMul(tf.softmax(s), tf.tile(vh, [1, group, 1, 1])); // [kvH, group, N, D]
    // Padding tokens (start -1) see nothing: zeros, as the kernel gives.
    const real = tf.tensor3d(
      Array.from(starts, (x) => (x >= 0 ? 1 : 0)),
      [N, 1, 1],
    );
    return tf.mul(tf.reshape(tf.transpose(o, [2, 0, 1, 3]), [N, H, D]), real) as tf.Tensor3D;
  });
}
