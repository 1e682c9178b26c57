/**
 * Forward, decode and training throughput for stories260K and random LLaMA configs, with and
 * without the native add-on, and on webgpu where asked, side by side. Each variant runs in its own
 * process (the kernel registry is per process); the parent prints one table with ratios.
 *
 *   npm run bench                              # everything on wasm (plain and native)
 *   npm run bench -- --models A                # a subset: stories260K, A, B, 1.1B (webgpu only)
 *   npm run bench -- --webgpu --peak-tflops 67 # add a webgpu column, and matmul TFLOP/s against the GPU's peak
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { initEngine, tf } from '../lib/engine/index.js';
import { crossEntropy } from '../lib/engine/ops.js';
import { generate } from '../lib/models/generate.js';
import { LlamaModel } from '../lib/models/llama.js';
import { TINYLLAMA_CONFIG } from './common.js';
import { loadModel, randomModel, type LoadedModel } from '../lib/models/load.js';

const T = 256;
const DECODE_PROMPT = 16;
const DECODE_TOKENS = 64;

const RANDOM_CONFIGS: Record<string, Record<string, unknown>> = {
  A: {
    model_type: 'llama',
    vocab_size: 32000,
    hidden_size: 288,
    intermediate_size: 768,
    num_hidden_layers: 6,
    num_attention_heads: 6,
    num_key_value_heads: 6,
    max_position_embeddings: 1024,
    tie_word_embeddings: false,
  },
  B: {
    model_type: 'llama',
    vocab_size: 32000,
    hidden_size: 768,
    intermediate_size: 2048,
    num_hidden_layers: 12,
    num_attention_heads: 12,
    num_key_value_heads: 12,
    max_position_embeddings: 1024,
    tie_word_embeddings: false,
  },
  // TinyLlama's shape: 4.4 GB in float32, past the wasm heap; measured on webgpu only.
  '1.1B': TINYLLAMA_CONFIG,
};
const WASM_TOO_BIG = new Set(['1.1B']);

/** Reference points measured on this machine class (2 cores, AVX2); see the Foundation issue. */
const TARGETS: Record<string, Partial<Record<Metric, { value: number; what: string }>>> = {
  A: {
    prefill_last: { value: 0.5 * 2688, what: '0.5x numpy' },
    decode: { value: 0.5 * 275, what: '0.5x llama.cpp f32' },
    train: { value: 314, what: '1.0x torch' },
  },
  B: {
    prefill_last: { value: 0.5 * 447, what: '0.5x numpy' },
    decode: { value: 0.5 * 47, what: '0.5x llama.cpp f32' },
  },
};

type Metric = 'prefill_all' | 'prefill_last' | 'decode' | 'train' | 'matmul';
const METRICS: Metric[] = ['prefill_all', 'prefill_last', 'decode', 'train', 'matmul'];
const MATMUL = 1024;
const LABEL: Record<Metric, string> = {
  prefill_all: `prefill T=${T}, all logits`,
  prefill_last: `prefill T=${T}, last logits`,
  decode: `decode ${DECODE_TOKENS} tok`,
  train: `forward+backward T=${T}`,
  matmul: `matmul ${MATMUL}^3 GFLOP/s`,
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Median tokens/s over `reps` timed runs after one warm-up (awaited: a GPU backend reads back asynchronously). */
async function throughput(tokens: number, reps: number, fn: () => Promise<unknown>): Promise<number> {
  await fn();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  return tokens / (median(times) / 1000);
}

/** Reads a result to the host. (Returning a large TypedArray from tf.tidy is slow: tidy walks it looking for tensors.) */
async function readAndDispose(t: tf.Tensor): Promise<void> {
  await t.data();
  t.dispose();
}

function ids(n: number, vocab: number): number[] {
  return Array.from({ length: n }, (_, i) => 3 + ((i * 7919) % (vocab - 3)));
}

async function measure(name: string): Promise<Record<Metric, number>> {
  await initEngine();
  const lm: LoadedModel =
    name === 'stories260K'
      ? await loadModel(fileURLToPath(new URL('../../shared/models/stories260K', import.meta.url)))
      : {
          dir: '',
          model: randomModel(RANDOM_CONFIGS[name], { seed: 1 }),
          tokenizer: null,
          generation: { eosTokenIds: [] },
        };
  const model = lm.model;
  const V = model.config.vocabSize,
    H = model.config.hiddenSize;
  const seq = ids(T, V);
  const reps = name === 'B' || name === '1.1B' ? 3 : 5;
  const prefillAll = await throughput(T, reps, () =>
    readAndDispose(tf.tidy(() => model.logits(model.forward([seq]).reshape([T, H]) as tf.Tensor2D))),
  );
  const prefillLast = await throughput(T, reps, () =>
    readAndDispose(tf.tidy(() => model.logits(LlamaModel.pickRows(model.forward([seq]), [T - 1])))),
  );
  const decode = await throughput(DECODE_TOKENS, reps, () =>
    generate(lm, [seq.slice(0, DECODE_PROMPT)], { maxNewTokens: DECODE_TOKENS, stopIds: [], stopAtBos: false }),
  );
  const targets = tf.tensor1d(seq.slice(1).concat([seq[0]]), 'int32');
  const names = [...model.params.keys()];
  const originals = names.map((n) => model.params.get(n)!);
  const train = await throughput(T, reps, async () => {
    const grads = tf.grads((...ps: tf.Tensor[]) => {
      names.forEach((n, i) => model.params.set(n, ps[i]));
      const logits = model.logits(model.forward([seq]).reshape([T, H]) as tf.Tensor2D);
      return tf.mean(crossEntropy(logits, targets)) as tf.Scalar;
    })(originals);
    names.forEach((n, i) => model.params.set(n, originals[i]));
    // tfjs-wasm and cpu run eagerly; reading the smallest gradient also covers an async backend.
    await grads[names.indexOf('model.norm.weight')].data();
    tf.dispose(grads);
  });
  const a = tf.randomNormal([MATMUL, MATMUL], 0, 1, 'float32', 1),
    b = tf.randomNormal([MATMUL, MATMUL], 0, 1, 'float32', 2);
  // "tokens" here are GFLOPs: 2 n^3 per product.
  const matmul = await throughput((2 * MATMUL ** 3) / 1e9, reps, () => readAndDispose(tf.matMul(a, b)));
  return { prefill_all: prefillAll, prefill_last: prefillLast, decode, train, matmul };
}

type Variant = 'plain' | 'native' | 'webgpu';

function child(model: string, variant: Variant): Record<Metric, number> | null {
  if (variant !== 'webgpu' && WASM_TOO_BIG.has(model)) return null;
  const r = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child', model], {
    encoding: 'utf8',
    env: {
      ...process.env,
      LLMBOX_NATIVE: variant === 'plain' ? '0' : '1',
      LLMBOX_BACKEND: variant === 'webgpu' ? 'webgpu' : 'wasm',
      LLMBOX_QUIET: '1',
    },
    maxBuffer: 1 << 24,
  });
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (r.status !== 0 || !line) throw new Error(`bench child ${model} (${variant}) failed:\n${r.stderr}`);
  return JSON.parse(line.slice(7));
}

async function main() {
  const args = process.argv.slice(2);
  if (args[0] === '--child') {
    process.stdout.write(`RESULT ${JSON.stringify(await measure(args[1]))}\n`);
    return;
  }
  const at = args.indexOf('--models');
  const models = at >= 0 ? args[at + 1].split(',') : ['stories260K', 'A', 'B'];
  const webgpu = args.includes('--webgpu');
  const peak = Number(args[args.indexOf('--peak-tflops') + 1]) || null;
  const info = await initEngine({ backend: 'wasm' });
  console.log(
    `llmbox bench: ${info.threads} threads, BLAS ${info.native.blas ?? 'n/a'}; medians, tokens/s (matmul: GFLOP/s), batch 1`,
  );
  const head = ['model', 'measure', 'plain wasm', 'native', 'native/plain', 'target', 'native/target'];
  const rows: string[][] = [webgpu ? [...head, 'webgpu', 'webgpu/native'] : head];
  const num = (x: number | undefined) => (x === undefined ? 'n/a' : x.toFixed(1));
  const ratio = (a: number | undefined, b: number | undefined) => (a && b ? `${(a / b).toFixed(2)}x` : '');
  for (const m of models) {
    const plain = child(m, 'plain');
    const nat = child(m, 'native');
    const gpu = webgpu ? child(m, 'webgpu') : null;
    for (const k of METRICS) {
      const t = TARGETS[m]?.[k];
      const row = [
        m,
        LABEL[k],
        num(plain?.[k]),
        num(nat?.[k]),
        ratio(nat?.[k], plain?.[k]),
        t ? `${t.value.toFixed(0)} (${t.what})` : '',
        t ? ratio(nat?.[k], t.value) : '',
      ];
      rows.push(webgpu ? [...row, num(gpu?.[k]), ratio(gpu?.[k], nat?.[k])] : row);
    }
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const fmt = (r: string[]) => `| ${r.map((x, c) => x.padEnd(widths[c])).join(' | ')} |`;
  console.log(fmt(rows[0]));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows.slice(1)) console.log(fmt(r));
  if (webgpu && peak) {
    const best = Math.max(
      ...rows
        .slice(1)
        .filter((r) => r[1] === LABEL.matmul)
        .map((r) => Number(r[7]) || 0),
    );
    console.log(
      `webgpu matmul: ${(best / 1000).toFixed(2)} TFLOP/s of a ${peak} TFLOP/s peak (${((100 * best) / 1000 / peak).toFixed(1)}%)`,
    );
  }
}

await main();
