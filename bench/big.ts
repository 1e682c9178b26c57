/**
 * A real-size model on this machine: a random LLaMA with TinyLlama 1.1B's shapes (hidden 2048, 22
 * layers, 32 heads, 4 kv heads, ffn 5632, vocab 32000), written once as GGUF in each type, then
 * loaded by llmbox (matrices kept in their stored type outside the wasm heap) and by llama.cpp
 * (node-llama-cpp, same file, same threads): load time, resident memory, prefill and decode tokens/s.
 *
 *   npm run bench:big [-- --types q8_0,q4_0,f16 --threads 2 --tokens 32 --prompt-repeat 1 --weights mapped,read]
 *
 * --weights: llmbox maps the file and uses the matrices where they lie (mapped, the default), or reads
 * them into 2 MiB pages of its own (read, --no-mmap); each is a row against the same llama.cpp run.
 * --prompt-repeat R repeats the 20-token prompt R times (prefill of longer prompts). The add-on is
 * build/llmbox_native.node, or LLMBOX_NATIVE_PATH (to compare two builds in one sitting).
 *
 * The files (about 1.2 GB for q8_0) are kept in LLMBOX_CACHE_DIR/bench (default ~/.cache/llmbox/bench).
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { initEngine } from '../lib/engine/index.js';
import { parseConfig } from '../lib/models/config.js';
import { writeGgufModel, type GgufOutType } from '../lib/models/gguf.js';
import { parameterShapes } from '../lib/models/llama.js';
import { loadModel } from '../lib/models/load.js';
import type { RawTensor } from '../lib/models/safetensors.js';
import { llamaCpp } from '../tests/helpers/llama-cpp.js';
import { arg, inChild, llamaCppSpeed, llmboxSpeed, paddedTokenizer, randomTensor, TINYLLAMA_CONFIG } from './common.js';

const TYPES = (arg('types') ?? 'q8_0,q4_0,f16').split(',') as GgufOutType[];
const THREADS = Number(arg('threads') ?? '2');
const TOKENS = Number(arg('tokens') ?? '32');
const WEIGHTS = (arg('weights') ?? 'mapped,read').split(',');
for (const w of WEIGHTS)
  if (w !== 'mapped' && w !== 'read') {
    console.error(`--weights: unknown ${JSON.stringify(w)} (mapped, read)`);
    process.exit(2);
  }
const PROMPT = Array(Number(arg('prompt-repeat') ?? '1'))
  .fill('Once upon a time, there was a little girl named Lily. She loved to play outside.')
  .join(' ');

const dir = join(process.env.LLMBOX_CACHE_DIR ?? join(homedir(), '.cache', 'llmbox'), 'bench');
mkdirSync(dir, { recursive: true });

/** Random normal(0, 0.02) weights (unit norms). */
function randomWeights(): Map<string, RawTensor> {
  const raw = new Map<string, RawTensor>();
  for (const [name, shape] of parameterShapes(parseConfig(TINYLLAMA_CONFIG)))
    raw.set(name, { shape, data: randomTensor(name, shape) });
  return raw;
}

function ensureFiles(): void {
  const missing = TYPES.filter((t) => !existsSync(join(dir, `tinyllama-random-${t}.gguf`)));
  if (!missing.length) return;
  const t0 = performance.now();
  const raw = randomWeights();
  const tokenizer = paddedTokenizer(TINYLLAMA_CONFIG.vocab_size);
  for (const type of missing) {
    const file = join(dir, `tinyllama-random-${type}.gguf`);
    writeGgufModel(file, { config: parseConfig(TINYLLAMA_CONFIG), raw, tokenizer, name: 'tinyllama-random' }, type);
    console.log(`wrote ${file} (${(statSync(file).size / 2 ** 30).toFixed(2)} GiB)`);
  }
  console.log(`weights made in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

const rss = () => process.memoryUsage().rss;

/** llmbox in a child process of its own, so that its resident memory is the model's alone. */
function llmboxChild(
  file: string,
  weights: string,
): { load: number; prefill: number; decode: number; resident: number } {
  const flags = [
    '--weights',
    weights,
    '--threads',
    String(THREADS),
    '--tokens',
    String(TOKENS),
    '--prompt-repeat',
    arg('prompt-repeat') ?? '1',
  ];
  return inChild(fileURLToPath(import.meta.url), ['--child', file, ...flags]);
}

async function llmboxRun(file: string) {
  const t0 = performance.now();
  const m = await loadModel(file, { threads: THREADS, mmap: arg('weights') !== 'read' });
  const load = (performance.now() - t0) / 1000;
  const speed = await llmboxSpeed(m, PROMPT, TOKENS);
  const resident = rss();
  m.model.dispose();
  return { load, ...speed, resident };
}

await initEngine({ threads: THREADS });
if (process.argv.includes('--child')) {
  console.log(JSON.stringify(await llmboxRun(arg('child') ?? '')));
  process.exit(0);
}
ensureFiles();
const cppAvailable = (await llamaCpp()) !== null;
console.log(`\nTinyLlama-shaped random LLaMA (1.1B), ${THREADS} threads, ${TOKENS} tokens generated (tokens/s)`);
const columns: [string, number][] = [
  ['type', 5],
  ['weights', 7],
  ['file GiB', 8],
  ['llmbox load s', 13],
  ['llama.cpp load s', 16],
  ['llmbox RSS GiB', 14],
  ['llmbox pre', 10],
  ['llama.cpp pre', 13],
  ['pre ratio', 9],
  ['llmbox dec', 10],
  ['llama.cpp dec', 13],
  ['dec ratio', 9],
];
const row = (cells: string[]) =>
  cells.map((c, i) => (i < 2 ? c.padEnd(columns[i][1]) : c.padStart(columns[i][1]))).join('  ');
console.log(row(columns.map(([c]) => c)));
const gib = (b: number) => (b / 2 ** 30).toFixed(2);
const ratio = (a: number, b: number | undefined) => (b ? (a / b).toFixed(2) + 'x' : '-');
for (const type of TYPES) {
  const file = join(dir, `tinyllama-random-${type}.gguf`);
  const theirs = cppAvailable ? await llamaCppSpeed(file, PROMPT, TOKENS, THREADS) : null;
  for (const weights of WEIGHTS) {
    const ours = llmboxChild(file, weights);
    console.log(
      row([
        type,
        weights,
        gib(statSync(file).size),
        ours.load.toFixed(2),
        theirs?.load.toFixed(2) ?? '-',
        gib(ours.resident),
        ours.prefill.toFixed(1),
        theirs?.prefill.toFixed(1) ?? '-',
        ratio(ours.prefill, theirs?.prefill),
        ours.decode.toFixed(2),
        theirs?.decode.toFixed(2) ?? '-',
        ratio(ours.decode, theirs?.decode),
      ]),
    );
  }
}
