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
import { arg } from './common.js';

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
