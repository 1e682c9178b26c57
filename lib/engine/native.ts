import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../util/paths.js';

/** The C add-on's surface (native/llmbox_native.c). Offsets are float32 element indices into `heap`. */
export interface NativeAddon {
  batchMatMul(
    heap: Float32Array,
    aOffsets: Int32Array,
    bOffsets: Int32Array,
    cOffset: number,
    m: number,
    n: number,
    k: number,
    transposeA: boolean,
    transposeB: boolean,
  ): void;
  softmaxXent(
    heap: Float32Array,
    logits: number,
    targets: number,
    loss: number,
    lse: number,
    rows: number,
    vocab: number,
  ): void;
  softmaxXentGrad(
    heap: Float32Array,
    logits: number,
    targets: number,
    lse: number,
    dy: number,
    out: number,
    rows: number,
    vocab: number,
  ): void;
  embeddingGrad(heap: Float32Array, ids: number, dy: number, out: number, n: number, dim: number, vocab: number): void;
  rope(
    heap: Float32Array,
    x: number,
    cos: number,
    sin: number,
    out: number,
    rows: number,
    heads: number,
    dim: number,
  ): void;
  /** out[rows x n] = x[rows x k] W^T for W [n x k] held outside the heap in a ggml type (0 f32, 1 f16, 30 bf16, 8 q8_0, 2 q4_0, 3 q4_1). */
  quantMatMul(
    heap: Float32Array,
    weights: Uint8Array,
    type: number,
    x: number,
    out: number,
    rows: number,
    n: number,
    k: number,
    /** W's column c multiplies x's column order[c] (q8_0/q4_x/q4_z only). */
    order?: Int32Array | null,
  ): void;
  /** out[i] = W[ids[i]] decoded, for an embedding W [vocab x k] held outside the heap (ids: int32 offset). */
  quantGather(
    heap: Float32Array,
    weights: Uint8Array,
    type: number,
    ids: number,
    out: number,
    n: number,
    k: number,
  ): void;
  /** `count` values stored as srcType (0 f32, 1 f16, 30 bf16) written into dst as q8_0, q4_0 or q4_1 blocks: the bytes encodeGgml writes. */
  quantizeRows(src: Uint8Array, srcType: number, dst: Uint8Array, type: number, count: number): void;
  /** out = x / sqrt(mean(x^2) + eps) * w per row, x and out [rows x dim], w [dim]. */
  rmsNorm(heap: Float32Array, x: number, w: number, out: number, rows: number, dim: number, eps: number): void;
  /** An ArrayBuffer of `bytes` zeros outside the V8 heap, in huge pages where the system gives them. */
  allocWeights(bytes: number): ArrayBuffer;
  /** Bytes [offset, offset + length) of the file as an ArrayBuffer mapped copy-on-write (writes stay in this process); throws naming the file. */
  mapFile(path: string, offset: number, length: number): ArrayBuffer;
  /** The index of the first NaN or Inf among values stored as type (0 f32, 1 f16, 30 bf16; aligned to their width), or -1. */
  firstNonFinite(bytes: Uint8Array, type: number): number;
  setThreads(n: number): void;
  getThreads(): number;
  blasInfo(): string;
}

export interface NativeStatus {
  addon: NativeAddon | null;
  path: string;
  reason?: string;
}

let cached: NativeStatus | undefined;

// Below this a buffer holds no whole huge page (and a mapping per small tensor costs more than it saves).
const HUGE_PAGE = 2 << 20;

/**
 * A zeroed buffer for `n` bytes of weights: with the add-on, outside the V8 heap in 2 MiB pages (a
 * decode row, which streams every weight once a token, read q4_0 at 15.2 GB/s a core from them and
 * 12.7 from 4 KiB pages); without it, an ordinary one.
 */
export function allocWeightBytes(n: number): Uint8Array {
  const addon = loadNative().addon;
  // An add-on built before allocWeights existed (a checkout not rebuilt) still runs.
  const huge = addon && typeof addon.allocWeights === 'function' && n >= HUGE_PAGE;
  return huge ? new Uint8Array(addon.allocWeights(n)) : new Uint8Array(n);
}

/**
 * Bytes [offset, offset + length) of the file mapped copy-on-write outside the V8 heap, for weights
 * used where they lie: a model loads without a copy and shares its pages with the page cache. Null
 * without the add-on (or one built before mapFile existed), or where the system cannot map the file:
 * the caller reads it instead.
 */
export function mapWeightFile(path: string, offset: number, length: number): Uint8Array | null {
  const addon = loadNative().addon;
  if (!addon || typeof addon.mapFile !== 'function') return null;
  try {
    return new Uint8Array(addon.mapFile(path, offset, length));
  } catch {
    return null; // a file system that cannot map (or a file cut short since its header was read)
  }
}

/** Loads build/llmbox_native.node once. LLMBOX_NATIVE=0 disables it (for comparisons). */
export function loadNative(): NativeStatus {
  if (cached) return cached;
  const path = process.env.LLMBOX_NATIVE_PATH ?? join(projectRoot(), 'build', 'llmbox_native.node');
  if (process.env.LLMBOX_NATIVE === '0') {
    cached = { addon: null, path, reason: 'disabled by LLMBOX_NATIVE=0' };
  } else if (!existsSync(path)) {
    cached = { addon: null, path, reason: `not built (${path} missing; run \`npm run build:native\`)` };
  } else {
    try {
      const require = createRequire(import.meta.url);
      cached = { addon: require(path) as NativeAddon, path };
    } catch (e) {
      cached = { addon: null, path, reason: `failed to load: ${(e as Error).message}` };
    }
  }
  return cached;
}
