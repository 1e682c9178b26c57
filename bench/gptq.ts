/**
 * GPTQ checkpoints held as q4_z against the ggml types, on one TinyLlama-1.1B layer's seven matrices
 * (hidden 2048, 4 kv heads of 64, ffn 5632): a decode step (one row through each), a prefill block of
 * 64 rows, the bytes read per decode step as GB/s, and the time to turn the checkpoint's tensors into
 * q4_z. Act-order adds a gather of the input per product.
 *
 *   npm run bench:gptq [-- --reps 20]
 */
import { initEngine, tf } from '../lib/engine/index.js';
import { packedMatMul, type PackedMatrix } from '../lib/engine/ops.js';
import { encodeGgml, fromHalf } from '../lib/models/ggml-quants.js';
import { GGML } from '../lib/models/gguf-file.js';
import { packGptq } from '../lib/models/gptq.js';
import { packedFromBytes } from '../lib/models/packed.js';
import type { RawTensor } from '../lib/models/safetensors.js';
import { seededRandom } from '../lib/util/random.js';
import { gptqLinear } from '../tests/helpers/gptq.js';
import { arg } from './common.js';

const info = await initEngine();
const REPS = Number(arg('reps') ?? '40');
const SHAPES: [string, number, number][] = [
  ['q_proj', 2048, 2048],
  ['k_proj', 256, 2048],
  ['v_proj', 256, 2048],
  ['o_proj', 2048, 2048],
  ['gate_proj', 5632, 2048],
  ['up_proj', 5632, 2048],
  ['down_proj', 2048, 5632],
];

const r = seededRandom(1);
const weights = SHAPES.map(([, n, k]) => Float32Array.from({ length: n * k }, () => 0.02 * (r() + r() + r() - 1.5)));

function ggmlLayer(type: number): PackedMatrix[] {
  return SHAPES.map(([, n, k], i) => packedFromBytes(encodeGgml(type, weights[i]), type, n, k));
}

/** The layer as GPTQ tensors (groups of 128, AutoGPTQ's format), and the time packGptq takes over them. */
function gptqLayer(actOrder: boolean): { layer: PackedMatrix[]; convertMs: number } {
  const raw = new Map<string, RawTensor>();
  SHAPES.forEach(([name, n, k], i) => {
    const order = actOrder ? Array.from({ length: k }, (_, j) => (j * 769) % k) : undefined;
    const t = gptqLinear(weights[i], n, k, { groupSize: 128, sym: true, format: 'gptq', order });
    const groups = t.groups;
    raw.set(`${name}.qweight`, { shape: [k / 8, n], data: t.qweight });
    raw.set(`${name}.qzeros`, { shape: [groups, n / 8], data: t.qzeros });
    raw.set(`${name}.scales`, { shape: [groups, n], data: Float32Array.from(t.scales, fromHalf) });
    raw.set(`${name}.g_idx`, { shape: [k], data: t.gIdx });
  });
  const t0 = performance.now();
  const packed = packGptq(raw, { groupSize: 128, descAct: actOrder, zeroOffset: 1, baseName: 'model', file: '-' }, '-');
  const convertMs = performance.now() - t0;
  return { layer: SHAPES.map(([name]) => packed.get(`${name}.weight`)!), convertMs };
}

/**
 * Milliseconds for `rows` rows through every matrix of each layer: the layers take turns within each
 * repetition (so drift in the machine's speed falls on all of them alike); the median of REPS.
 */
function times(layers: PackedMatrix[][], rows: number): number[] {
  const xs = SHAPES.map(([, , k]) => tf.randomNormal([rows, k]) as tf.Tensor2D);
  const run = (layer: PackedMatrix[]) => layer.forEach((w, i) => packedMatMul(xs[i], w).dispose());
  layers.forEach(run);
  const ms = layers.map(() => [] as number[]);
  for (let i = 0; i < REPS; i++)
    layers.forEach((layer, j) => {
      const t0 = performance.now();
      run(layer);
      ms[j].push(performance.now() - t0);
    });
  tf.dispose(xs);
  return ms.map((m) => m.sort((a, b) => a - b)[Math.floor(m.length / 2)]);
}

const rowsOf: [string, PackedMatrix[], number | null][] = [
  ['q4_0', ggmlLayer(GGML.Q4_0), null],
  ['q8_0', ggmlLayer(GGML.Q8_0), null],
  ['q4_1', ggmlLayer(GGML.Q4_1), null],
];
for (const actOrder of [false, true]) {
  const g = gptqLayer(actOrder);
  rowsOf.push([actOrder ? 'GPTQ act-order (q4_z)' : 'GPTQ (q4_z)', g.layer, g.convertMs]);
}

const params = SHAPES.reduce((a, [, n, k]) => a + n * k, 0);
console.log(
  `one TinyLlama layer (${(params / 1e6).toFixed(1)}M weights) on ${info.backend}${info.native.enabled ? ' + native' : ''}, median of ${REPS}`,
);
console.log(
  'type                    | bytes/weight | decode ms | GB/s  | x q4_0 | prefill 64 ms | x q4_0 | to q4_z ms',
);
const decode = times(
  rowsOf.map(([, l]) => l),
  1,
);
const prefill = times(
  rowsOf.map(([, l]) => l),
  64,
);
rowsOf.forEach(([name, layer, convertMs], i) => {
  const bytes = layer.reduce((a, w) => a + w.weights.byteLength, 0);
  const ratio = (v: number, b: number) => (b / v).toFixed(2);
  console.log(
    [
      name.padEnd(23),
      (bytes / params).toFixed(3).padStart(12),
      decode[i].toFixed(2).padStart(9),
      (bytes / decode[i] / 1e6).toFixed(1).padStart(5),
      ratio(decode[i], decode[0]).padStart(6),
      prefill[i].toFixed(1).padStart(13),
      ratio(prefill[i], prefill[0]).padStart(6),
      convertMs === null ? '-' : convertMs.toFixed(0),
    ].join(' | '),
  );
});
