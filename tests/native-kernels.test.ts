import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { initEngine, nativeAddon, tf } from '../lib/engine/index.js';
import { loadNative } from '../lib/engine/native.js';

function rand(shape: number[], seed: number): tf.Tensor {
  return tf.randomNormal(shape, 0, 1, 'float32', seed);
}

/** out[..., i, j] = sum_k op(a)[..., i, k] op(b)[..., k, j], in float64 on the host, with broadcasting. */
function referenceMatMul(
  a: tf.Tensor,
  b: tf.Tensor,
  ta: boolean,
  tb: boolean,
): { shape: number[]; data: Float64Array } {
  const A = a.arraySync() as unknown,
    B = b.arraySync() as unknown;
  const batchA = a.shape.slice(0, -2),
    batchB = b.shape.slice(0, -2);
  const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(batchA, batchB);
  const m = ta ? a.shape[a.rank - 1] : a.shape[a.rank - 2];
  const k = ta ? a.shape[a.rank - 2] : a.shape[a.rank - 1];
  const n = tb ? b.shape[b.rank - 2] : b.shape[b.rank - 1];
  const nb = outBatch.reduce((x, y) => x * y, 1);
  const data = new Float64Array(nb * m * n);
  const pick = (x: unknown, batchShape: number[], idx: number[]) => {
    let cur = x as unknown[];
    const pad = outBatch.length - batchShape.length;
    for (let d = 0; d < batchShape.length; d++) cur = cur[batchShape[d] === 1 ? 0 : idx[d + pad]] as unknown[];
    return cur as number[][];
  };
  for (let bi = 0; bi < nb; bi++) {
    const idx: number[] = [];
    let r = bi;
    for (let d = outBatch.length - 1; d >= 0; d--) {
      idx[d] = r % outBatch[d];
      r = Math.floor(r / outBatch[d]);
    }
    const ma = pick(A, batchA, idx),
      mb = pick(B, batchB, idx);
    for (let i = 0; i < m; i++)
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let q = 0; q < k; q++) s += (ta ? ma[q][i] : ma[i][q]) * (tb ? mb[j][q] : mb[q][j]);
        data[(bi * m + i) * n + j] = s;
      }
  }
  return { shape: [...outBatch, m, n], data };
}

const CASES: [number[], number[]][] = [
  [
    [7, 5],
    [5, 9],
  ],
  [
    [3, 7, 5],
    [3, 5, 9],
  ],
  [
    [2, 1, 7, 5],
    [3, 5, 9],
  ],
  [
    [4, 7, 5],
    [5, 9],
  ],
  [
    [1, 6],
    [6, 1],
  ],
];

describe('native BatchMatMul on the wasm heap', () => {
  it('is active whenever the add-on is built and the backend is wasm', async () => {
    const info = await initEngine();
    const built = existsSync(loadNative().path) && process.env.LLMBOX_NATIVE !== '0';
    expect(info.native.enabled).toBe(built && info.backend === 'wasm');
    expect(nativeAddon() !== null).toBe(info.native.enabled);
    if (info.native.enabled) expect(info.native.blas).toBeTruthy();
  });

  it.each(CASES)('matches a float64 reference for %j x %j with every transpose', async (sa, sb) => {
    await initEngine();
    for (const ta of [false, true])
      for (const tb of [false, true]) {
        const swap = (s: number[], t: boolean) => (t ? [...s.slice(0, -2), s[s.length - 1], s[s.length - 2]] : s);
        const a = rand(swap(sa, ta), 1),
          b = rand(swap(sb, tb), 2);
        const got = tf.matMul(a, b, ta, tb);
        const ref = referenceMatMul(a, b, ta, tb);
        expect(got.shape).toEqual(ref.shape);
        const g = got.dataSync();
        let md = 0;
        g.forEach((x, i) => (md = Math.max(md, Math.abs(x - ref.data[i]))));
        expect(md).toBeLessThan(1e-4);
        tf.dispose([a, b, got]);
      }
  });

  it('gives matmul gradients equal to the float64 reference', async () => {
    await initEngine();
    const a = rand([2, 6, 4], 3),
      b = rand([2, 4, 5], 4),
      dy = rand([2, 6, 5], 5);
    const [ga, gb] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y), dy)))([a, b]);
    // dA = dY B^T, dB = A^T dY
    const ra = referenceMatMul(dy, b, false, true),
      rb = referenceMatMul(a, dy, true, false);
    ga.dataSync().forEach((x, i) => expect(Math.abs(x - ra.data[i])).toBeLessThan(1e-4));
    gb.dataSync().forEach((x, i) => expect(Math.abs(x - rb.data[i])).toBeLessThan(1e-4));
  });

  it('survives wasm memory growth between calls', async () => {
    await initEngine();
    const a = rand([64, 64], 6),
      b = rand([64, 64], 7);
    const before = tf.matMul(a, b).dataSync().slice();
    const big = tf.zeros([(64 * 1024 * 1024) / 4]); // 64 MiB forces the heap to grow
    const after = tf.matMul(a, b).dataSync();
    expect(Array.from(after)).toEqual(Array.from(before));
    tf.dispose([a, b, big]);
  });
});
