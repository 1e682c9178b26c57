/**
 * A LLaMA-2 7B-shaped model on this 24 GB machine. Random bf16 weights are written once as a Hugging
 * Face folder in two shards, as meta-llama/Llama-2-7b-hf is (13.5 GB), and the same weights as a GGUF
 * bf16 file. Each run loads one in a child process of its own and reports load time, resident memory
 * (now and peak), prefill, decode and scoring tokens/s, and the weight bytes read per second of decode
 * against the machine's memcpy bandwidth. llama.cpp (node-llama-cpp) runs on the same GGUF file with
 * the same threads.
 *
 *   npm run bench:7b [-- --runs folder,folder-read,folder-q8_0,folder-q4_0,gguf,gguf-read,llama.cpp --threads 2 --tokens 8]
 *
 * folder: bf16 matrices used where they lie in the mapped shards, outside the wasm heap; folder-read and
 * gguf-read: read into memory of llmbox's own instead (--no-mmap); folder-q8_0 / folder-q4_0: packed
 * while reading (--load-in-8bit / --load-in-4bit --quant q4_0). The files (27 GB) are kept in
 * LLMBOX_CACHE_DIR/bench (default ~/.cache/llmbox/bench).
 */
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initEngine } from '../lib/engine/index.js';
import { parseConfig } from '../lib/models/config.js';
import { generate } from '../lib/models/generate.js';
import { GGML } from '../lib/models/gguf-file.js';
import { writeGgufModel, type LazyTensor } from '../lib/models/gguf.js';
import { encodeGgml } from '../lib/models/ggml-quants.js';
import { parameterShapes } from '../lib/models/llama.js';
import { loadModel, type LoadModelOptions } from '../lib/models/load.js';
import { writeSafetensorsFrom, type TensorSource } from '../lib/models/safetensors.js';
import { nextTokenLogprobs } from '../lib/models/score.js';
import { llamaCpp } from '../tests/helpers/llama-cpp.js';
import { arg, inChild, llamaCppSpeed, llmboxSpeed, paddedTokenizer, randomTensor } from './common.js';

/** meta-llama/Llama-2-7b-hf's config.json (the fields llmbox reads). */
const LLAMA2_7B = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 32000,
  hidden_size: 4096,
  intermediate_size: 11008,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 32,
  max_position_embeddings: 4096,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
  torch_dtype: 'bfloat16',
};

const KNOWN = ['folder', 'folder-read', 'folder-q8_0', 'folder-q4_0', 'gguf', 'gguf-read', 'llama.cpp'];
const RUNS = (arg('runs') ?? KNOWN.join(',')).split(',');
for (const run of RUNS)
  if (!KNOWN.includes(run)) {
    console.error(`--runs: unknown run ${JSON.stringify(run)} (known: ${KNOWN.join(', ')})`);
    process.exit(2);
  }
const THREADS = Number(arg('threads') ?? '2');
const TOKENS = Number(arg('tokens') ?? '8');
const PROMPT = 'Once upon a time, there was a little girl named Lily. She loved to play outside.';
const SCORED = Array(6).fill(PROMPT).join(' ');

const dir = join(process.env.LLMBOX_CACHE_DIR ?? join(homedir(), '.cache', 'llmbox'), 'bench');
const folder = join(dir, 'llama2-7b-random-bf16');
const gguf = join(dir, 'llama2-7b-random-bf16.gguf');
const shapes = parameterShapes(parseConfig(LLAMA2_7B));
// Hugging Face's order: embedding, layer by layer, final norm, head.
const order = [...shapes.keys()].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
function rank(name: string): number {
  const m = /layers\.(\d+)\./.exec(name);
  return m ? 1 + Number(m[1]) : name.includes('embed_tokens') ? 0 : 1e3 + (name.startsWith('lm_head') ? 1 : 0);
}

const bf16 = (name: string) => encodeGgml(GGML.BF16, randomTensor(name, shapes.get(name)!));

/** The folder: config, tokenizer, two shards split at 10 GB as transformers splits them, and the shard index. */
function writeFolder(): void {
  const part = `${folder}.partial`;
  rmSync(part, { recursive: true, force: true });
  mkdirSync(part, { recursive: true });
  const shards: Map<string, TensorSource>[] = [new Map()];
  let bytes = 0,
    total = 0;
  for (const name of order) {
    const shape = shapes.get(name)!;
    const size = shape.reduce((a, b) => a * b, 1) * 2;
    if (bytes + size > 10e9 && shards.at(-1)!.size) {
      shards.push(new Map());
      bytes = 0;
    }
    bytes += size;
    total += size;
    shards.at(-1)!.set(name, { shape, dtype: 'BF16', chunks: () => [bf16(name)] });
  }
  const weightMap: Record<string, string> = {};
  shards.forEach((shard, i) => {
    const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
    writeSafetensorsFrom(join(part, file), shard);
    for (const name of shard.keys()) weightMap[name] = file;
  });
  const json = (o: unknown) => JSON.stringify(o, null, 2) + '\n';
  writeFileSync(
    join(part, 'model.safetensors.index.json'),
    json({ metadata: { total_size: total }, weight_map: weightMap }),
  );
  writeFileSync(join(part, 'config.json'), json(LLAMA2_7B));
  writeFileSync(join(part, 'tokenizer.json'), JSON.stringify(paddedTokenizer(LLAMA2_7B.vocab_size).definition));
  renameSync(part, folder);
}

function writeGguf(): void {
  const raw = new Map<string, LazyTensor>();
  for (const name of order)
    raw.set(name, { shape: shapes.get(name)!, data: () => randomTensor(name, shapes.get(name)!) });
  const tokenizer = paddedTokenizer(LLAMA2_7B.vocab_size);
  writeGgufModel(gguf, { config: parseConfig(LLAMA2_7B), raw, tokenizer, name: 'llama2-7b-random' }, 'bf16');
}

function ensureFiles(): void {
  mkdirSync(dir, { recursive: true });
  const gib = (f: string) => (statSync(f).size / 2 ** 30).toFixed(2);
  if (!existsSync(folder) && RUNS.some((r) => r.startsWith('folder'))) {
    const t0 = performance.now();
    writeFolder();
    const shards = readdirSync(folder).filter((f) => f.endsWith('.safetensors'));
    console.log(
      `wrote ${folder} (${shards.map((f) => `${f} ${gib(join(folder, f))} GiB`).join(', ')}) in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
    );
  }
  if (!existsSync(gguf) && RUNS.some((r) => r === 'gguf' || r === 'llama.cpp')) {
    const t0 = performance.now();
    writeGguf();
    console.log(`wrote ${gguf} (${gib(gguf)} GiB) in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
}

interface Result {
  load: number;
  /** After the run, the model still loaded (llama.cpp's is disposed by then: its peak is what counts). */
  resident?: number;
  peak: number;
  prefill: number;
  decode: number;
  score?: number;
  weights?: number;
  text?: string;
}

const GIB = 2 ** 30;
const peakRss = () => process.resourceUsage().maxRSS * 1024;

async function llmboxRun(run: string): Promise<Result> {
  const [what, how] = run.split('-');
  const opts: LoadModelOptions = {
    threads: THREADS,
    ...(how === 'read' ? { mmap: false } : how ? { quantize: how as 'q8_0' | 'q4_0' } : {}),
  };
  const t0 = performance.now();
  const m = await loadModel(what === 'gguf' ? gguf : folder, opts);
  const load = (performance.now() - t0) / 1000;
  const speed = await llmboxSpeed(m, PROMPT, TOKENS);
  const ids = m.tokenizer!.encode(SCORED);
  const t1 = performance.now();
  const lp = await nextTokenLogprobs(m.model, ids);
  const score = lp.length / ((performance.now() - t1) / 1000);
  if (!lp.every(Number.isFinite)) throw new Error('non-finite log-probabilities');
  const [gen] = await generate(m, [PROMPT], { maxNewTokens: TOKENS, stop: [] });
  return {
    load,
    resident: process.memoryUsage().rss,
    peak: peakRss(),
    ...speed,
    score,
    weights: m.model.weightBytes(),
    text: gen.text,
  };
}

async function cppRun(): Promise<Result> {
  const r = await llamaCppSpeed(gguf, PROMPT, TOKENS, THREADS);
  return { load: r.load, peak: peakRss(), prefill: r.prefill, decode: r.decode };
}

/** Each run in a child process of its own, so that its resident memory is its model's alone. */
const child = (run: string) =>
  inChild<Result>(fileURLToPath(import.meta.url), [
    '--child',
    run,
    '--threads',
    String(THREADS),
    '--tokens',
    String(TOKENS),
  ]);

/** Single-threaded memcpy of 1 GiB: the yardstick for decode, which reads every weight once per token. */
function memcpyGBs(): number {
  const a = Buffer.alloc(GIB, 1);
  const b = Buffer.alloc(GIB);
  a.copy(b);
  const t0 = performance.now();
  for (let i = 0; i < 3; i++) a.copy(b);
  return (3 * 2 * GIB) / ((performance.now() - t0) / 1000) / 1e9;
}

if (process.argv.includes('--child')) {
  const run = arg('child')!;
  if (run !== 'llama.cpp') await initEngine({ threads: THREADS });
  console.log(JSON.stringify(run === 'llama.cpp' ? await cppRun() : await llmboxRun(run)));
  process.exit(0);
}
ensureFiles();
const bandwidth = memcpyGBs();
const cppAvailable = (await llamaCpp()) !== null;
console.log(`\nLLaMA-2 7B-shaped random model, bf16 on disk, ${THREADS} threads, ${TOKENS} tokens generated`);
console.log(`memcpy bandwidth (1 thread, read + write): ${bandwidth.toFixed(1)} GB/s`);
console.log(
  'run          load s  RSS GiB  peak GiB  weights GiB  prefill tok/s  decode tok/s  decode GB/s  score tok/s',
);
const rows: [string, Result][] = [];
for (const run of RUNS) {
  if (run === 'llama.cpp' && !cppAvailable) {
    console.log('llama.cpp    (not installed: npm ci --prefix tools/llama-cpp --omit=optional)');
    continue;
  }
  const r = child(run);
  rows.push([run, r]);
  const w = r.weights ?? statSync(gguf).size;
  console.log(
    `${run.padEnd(12)} ${r.load.toFixed(1).padStart(6)} ${(r.resident ? (r.resident / GIB).toFixed(2) : '-').padStart(8)} ${(r.peak / GIB).toFixed(2).padStart(9)} ${(w / GIB).toFixed(2).padStart(12)} ${r.prefill.toFixed(2).padStart(14)} ${r.decode.toFixed(3).padStart(13)} ${((w * r.decode) / 1e9).toFixed(1).padStart(12)} ${(r.score?.toFixed(2) ?? '-').padStart(12)}`,
  );
}
const ours = rows.find(([r]) => r === 'gguf')?.[1];
const theirs = rows.find(([r]) => r === 'llama.cpp')?.[1];
if (ours && theirs)
  console.log(
    `\nsame GGUF file, llmbox / llama.cpp: prefill ${(ours.prefill / theirs.prefill).toFixed(2)}x, decode ${(ours.decode / theirs.decode).toFixed(2)}x, load ${(ours.load / theirs.load).toFixed(2)}x the time`,
  );
for (const [run, r] of rows)
  if (r.text !== undefined) console.log(`${run} greedy: ${JSON.stringify(r.text.slice(0, 60))}`);
