/**
 * A real-size model on this machine: a random LLaMA with TinyLlama 1.1B's shapes (hidden 2048, 22
 * layers, 32 heads, 4 kv heads, ffn 5632, vocab 32000), written once as GGUF in each type, then
 * loaded by llmbox (matrices kept in their stored type outside the wasm heap) and by llama.cpp
 * (node-llama-cpp, same file, same threads): load time, resident memory, prefill and decode tokens/s.
 *
 *   npm run bench:big [-- --types q8_0,q4_0,f16 --threads 2 --tokens 32 --prompt-repeat 1]
 *
 * --prompt-repeat R repeats the 20-token prompt R times (prefill of longer prompts). The add-on is
 * build/llmbox_native.node, or LLMBOX_NATIVE_PATH (to compare two builds in one sitting).
 *
 * The files (about 1.2 GB for q8_0) are kept in LLMBOX_CACHE_DIR/bench (default ~/.cache/llmbox/bench).
 */
import { spawnSync } from 'node:child_process';
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
import { TextTokenizer } from '../lib/models/tokenizer.js';
import { resolveModelDir } from '../lib/util/paths.js';
import { llamaCpp } from '../tests/helpers/llama-cpp.js';
import { arg, llamaCppSpeed, llmboxSpeed, TINYLLAMA_CONFIG } from './common.js';

const TYPES = (arg('types') ?? 'q8_0,q4_0,f16').split(',') as GgufOutType[];
const THREADS = Number(arg('threads') ?? '2');
const TOKENS = Number(arg('tokens') ?? '32');
const PROMPT = Array(Number(arg('prompt-repeat') ?? '1'))
  .fill('Once upon a time, there was a little girl named Lily. She loved to play outside.')
  .join(' ');

const dir = join(process.env.LLMBOX_CACHE_DIR ?? join(homedir(), '.cache', 'llmbox'), 'bench');
mkdirSync(dir, { recursive: true });

/** stories260K's tokenizer with its vocabulary padded to 32000 unused tokens (llama.cpp wants one token per row). */
function paddedTokenizer(): TextTokenizer {
  const src = TextTokenizer.fromDir(resolveModelDir('stories260K'));
  const json = structuredClone(src.definition) as { model: { vocab: Record<string, number> } };
  for (let id = Object.keys(json.model.vocab).length; id < TINYLLAMA_CONFIG.vocab_size; id++)
    json.model.vocab[`<unused${id}>`] = id;
  return new TextTokenizer(json, src.config);
}

/** Random normal(0, 0.02) weights from a fast seeded generator (Box-Muller over xorshift). */
function randomWeights(): Map<string, RawTensor> {
  let s = 0x9e3779b9;
  const uniform = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) + 0.5) / 4294967296;
  };
  const raw = new Map<string, RawTensor>();
  for (const [name, shape] of parameterShapes(parseConfig(TINYLLAMA_CONFIG))) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (name.endsWith('norm.weight')) data.fill(1);
    else
      for (let i = 0; i < data.length; i++)
        data[i] = 0.02 * Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
    raw.set(name, { shape, data });
  }
  return raw;
}

function ensureFiles(): void {
  const missing = TYPES.filter((t) => !existsSync(join(dir, `tinyllama-random-${t}.gguf`)));
  if (!missing.length) return;
  const t0 = performance.now();
  const raw = randomWeights();
  const tokenizer = paddedTokenizer();
  for (const type of missing) {
    const file = join(dir, `tinyllama-random-${type}.gguf`);
    writeGgufModel(file, { config: parseConfig(TINYLLAMA_CONFIG), raw, tokenizer, name: 'tinyllama-random' }, type);
    console.log(`wrote ${file} (${(statSync(file).size / 2 ** 30).toFixed(2)} GiB)`);
  }
  console.log(`weights made in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

const rss = () => process.memoryUsage().rss;

/** llmbox in a child process of its own, so that its resident memory is the model's alone. */
function llmboxChild(file: string): { load: number; prefill: number; decode: number; resident: number } {
  const r = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      fileURLToPath(import.meta.url),
      '--child',
      file,
      '--threads',
      String(THREADS),
      '--tokens',
      String(TOKENS),
      '--prompt-repeat',
      arg('prompt-repeat') ?? '1',
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

async function llmboxRun(file: string) {
  const t0 = performance.now();
  const m = await loadModel(file, { threads: THREADS });
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
console.log(
  'type   file GiB  llmbox load s  llmbox RSS GiB  llmbox pre  llama.cpp pre  pre ratio  llmbox dec  llama.cpp dec  dec ratio',
);
for (const type of TYPES) {
  const file = join(dir, `tinyllama-random-${type}.gguf`);
  const ours = llmboxChild(file);
  const theirs = cppAvailable ? await llamaCppSpeed(file, PROMPT, TOKENS, THREADS) : null;
  const gib = (b: number) => (b / 2 ** 30).toFixed(2);
  console.log(
    `${type.padEnd(6)} ${gib(statSync(file).size).padStart(8)} ${ours.load.toFixed(1).padStart(14)} ${gib(ours.resident).padStart(15)} ${ours.prefill.toFixed(1).padStart(11)} ${(theirs?.prefill.toFixed(1) ?? '-').padStart(14)} ${(theirs ? (ours.prefill / theirs.prefill).toFixed(2) + 'x' : '-').padStart(10)} ${ours.decode.toFixed(2).padStart(11)} ${(theirs?.decode.toFixed(2) ?? '-').padStart(14)} ${theirs ? (ours.decode / theirs.decode).toFixed(2) + 'x' : '-'}`.padEnd(
      10,
    ),
  );
}
