/**
 * Where a forward pass spends its time on a tiny model: tfjs kernels per call by name, how many, and
 * the share of wall time inside matrix products versus the rest (per-operation overhead). Issue #13's
 * HellaSwag target on stories260K is bound by this, not by FLOPs.
 *
 *   npm run bench:ops [-- --model stories260K --tokens 64]
 */
import { initEngine, tf } from '../lib/engine/index.js';
import { KVCache } from '../lib/models/kv-cache.js';
import { loadModel } from '../lib/models/load.js';
import { loadNative, type NativeAddon } from '../lib/engine/native.js';
import { arg } from './common.js';

// Time inside the add-on's quantMatMul, by product shape (what the kernel costs against the call around it).
const status = loadNative();
const inNative = new Map<string, { n: number; ms: number; bytes: number }>();
if (status.addon) {
  const call = status.addon.quantMatMul;
  // The add-on's properties are read-only: the engine gets an object that inherits them instead.
  const timed: NativeAddon = Object.create(status.addon);
  status.addon = timed;
  const quantMatMul = (...a: Parameters<typeof call>) => {
    const t0 = performance.now();
    call(...a);
    const key = `${a[5]}x${a[7]} . ${a[6]}x${a[7]} (type ${a[2]})`;
    const s = inNative.get(key) ?? { n: 0, ms: 0, bytes: 0 };
    s.n++;
    s.ms += performance.now() - t0;
    s.bytes += a[1].byteLength;
    inNative.set(key, s);
  };
  Object.defineProperty(timed, 'quantMatMul', { value: quantMatMul });
}

const info = await initEngine();
const m = await loadModel(arg('model') ?? 'stories260K');
const T = Number(arg('tokens') ?? '64');
const ids = Array.from({ length: T }, (_, i) => 5 + ((i * 37) % 400));
const MATMUL = new Set(['BatchMatMul', '_FusedMatMul', 'LlmboxQuantMatMul']);

async function profile(label: string, f: () => tf.Tensor) {
  for (let i = 0; i < 3; i++) tf.dispose(f()); // warm up
  const reps = 20;
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const out = f();
    out.dataSync();
    out.dispose();
  }
  const wall = (performance.now() - t0) / reps;
  inNative.clear();
  const p = await tf.profile(() => {
    const out = f();
    out.dataSync();
    return out;
  });
  const counts = new Map<string, { n: number; ms: number }>();
  for (const k of p.kernels) {
    const c = counts.get(k.name) ?? { n: 0, ms: 0 };
    c.n++;
    c.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
    counts.set(k.name, c);
  }
  const total = [...counts.values()].reduce((a, c) => a + c.n, 0);
  const matmulMs = [...counts].filter(([n]) => MATMUL.has(n)).reduce((a, [, c]) => a + c.ms, 0);
  const kernelMs = [...counts.values()].reduce((a, c) => a + c.ms, 0);
  console.log(
    `\n${label}: ${wall.toFixed(2)} ms per call, ${total} kernels (${((wall / total) * 1000).toFixed(0)} us of wall time per kernel)`,
  );
  console.log(
    `  time in kernels ${kernelMs.toFixed(2)} ms (matrix products ${matmulMs.toFixed(2)} ms, ${((100 * matmulMs) / wall).toFixed(0)}% of wall); outside kernels ${(wall - kernelMs).toFixed(2)} ms`,
  );
  const top = [...counts].sort((a, b) => b[1].n - a[1].n).slice(0, 12);
  console.log('  ' + top.map(([n, c]) => `${n} x${c.n}`).join(', '));
  tf.dispose(p.result as tf.Tensor);
  if (!inNative.size) return;
  const nativeMs = [...inNative.values()].reduce((a, c) => a + c.ms, 0);
  console.log(`  inside the add-on's quantMatMul: ${nativeMs.toFixed(2)} ms`);
  for (const [key, c] of [...inNative].sort((a, b) => b[1].ms - a[1].ms))
    console.log(
      `    ${key.padEnd(34)} x${String(c.n).padEnd(4)} ${c.ms.toFixed(2).padStart(8)} ms  ${(c.bytes / (c.ms * 1e6)).toFixed(1).padStart(6)} GB/s of weights`,
    );
}

console.log(
  `${arg('model') ?? 'stories260K'} on ${info.backend}${info.native.enabled ? ' + native' : ''}, ${m.model.config.numLayers} layers`,
);
await profile(`prefill T=${T} (logits of the last position)`, () =>
  tf.tidy(() =>
    m.model.logits(
      m.model
        .forward([ids])
        .reshape([T, m.model.config.hiddenSize])
        .slice([T - 1, 0], [1, -1]) as tf.Tensor2D,
    ),
  ),
);
const cache = new KVCache(m.model.config, 1, T + 64);
tf.tidy(() => {
  m.model.forward([ids], { cache });
});
await profile('decode step (one token with the KV cache)', () =>
  tf.tidy(() => {
    const c = cache.length;
    const out = m.model.logits(
      m.model.forward([[7]], { cache }).reshape([1, m.model.config.hiddenSize]) as tf.Tensor2D,
    );
    cache.length = c; // the same step each time
    return out;
  }),
);
