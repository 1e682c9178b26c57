import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine, tf } from '../lib/engine/index.js';
import { seededRandom } from '../lib/util/random.js';

/** Reference slice by index arithmetic on the flat values. */
function sliceRef(vals: ArrayLike<number>, shape: number[], begin: number[], size: number[]): number[] {
  const out: number[] = [];
  const strides = shape.map((_, d) => shape.slice(d + 1).reduce((a, n) => a * n, 1));
  const idx = new Array(shape.length).fill(0);
  const total = size.reduce((a, n) => a * n, 1);
  for (let o = 0; o < total; o++) {
    out.push(vals[idx.reduce((a, i, d) => a + (begin[d] + i) * strides[d], 0)]);
    for (let d = shape.length - 1; d >= 0; d--) {
      if (++idx[d] < size[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

describe('wasm Slice kernel (copies between heap views)', () => {
  beforeAll(async () => {
    await initEngine();
  });

  it('matches index arithmetic for random shapes, ranks 1-5, float32/int32/bool, and feeds gradients', () => {
    expect(tf.getBackend()).toBe('wasm');
    const rand = seededRandom(3);
    const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
    for (let trial = 0; trial < 200; trial++) {
      const rank = int(1, 5);
      const shape = Array.from({ length: rank }, () => int(1, 6));
      const begin = shape.map((n) => int(0, n - 1));
      const size = shape.map((n, d) => (rand() < 0.3 ? -1 : int(0, n - begin[d])));
      const sz = size.map((s, d) => (s === -1 ? shape[d] - begin[d] : s));
      const n = shape.reduce((a, b) => a * b, 1);
      const vals = Array.from({ length: n }, (_, i) => i * 3 - 7);
      for (const dtype of ['float32', 'int32', 'bool'] as const) {
        const data = dtype === 'bool' ? vals.map((v) => (v % 2 ? 1 : 0)) : vals;
        const x = tf.tensor(data, shape, dtype);
        const y = tf.slice(x, begin, size);
        expect(y.shape).toEqual(sz);
        expect(Array.from(y.dataSync())).toEqual(sliceRef(data, shape, begin, sz));
        x.dispose();
        y.dispose();
      }
    }
    // The gradient of a slice pads back into place.
    const x = tf.tensor2d([
      [1, 2, 3],
      [4, 5, 6],
    ]);
    const g = tf.grad((t: tf.Tensor) =>
      tf.sum(
        tf.mul(
          tf.slice(t, [0, 1], [2, 2]),
          tf.tensor2d([
            [1, 2],
            [3, 4],
          ]),
        ),
      ),
    )(x);
    expect(Array.from(g.dataSync())).toEqual([0, 1, 2, 0, 3, 4]);
  });
});
