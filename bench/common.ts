/** What several benchmarks share: their flags, and llmbox and llama.cpp timed the same way. */
import { spawnSync } from 'node:child_process';
import { generate } from '../lib/models/generate.js';
import type { LoadedModel } from '../lib/models/load.js';
import { TextTokenizer } from '../lib/models/tokenizer.js';
import { resolveModelDir } from '../lib/util/paths.js';
import { llamaCpp } from '../tests/helpers/llama-cpp.js';

/** The value after `--name` on the command line. */
export function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/**
 * Runs this benchmark script again as a child process with `args` (so that each run's resident
 * memory is its own) and returns the JSON its last line of output holds; its stderr shows through.
 */
export function inChild<T>(script: string, args: string[]): T {
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`${script} ${args.join(' ')} failed (exit ${r.status})`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as T;
}

export interface Speed {
  /** Prompt tokens per second. */
  prefill: number;
  /** Generated tokens per second after the first. */
  decode: number;
}

/** llmbox's greedy prefill and decode speed on a prompt (after a warm-up: the first calls set kernels up). */
export async function llmboxSpeed(m: LoadedModel, prompt: string, tokens: number): Promise<Speed> {
  const promptTokens = m.tokenizer!.encode(prompt).length;
  await generate(m, [prompt], { maxNewTokens: 2, stopAtBos: false });
  const t0 = performance.now();
  await generate(m, [prompt], { maxNewTokens: 1, stopAtBos: false });
  const prefillS = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  await generate(m, [prompt], { maxNewTokens: tokens, stopAtBos: false, stop: [] });
  const total = (performance.now() - t1) / 1000;
  return { prefill: promptTokens / prefillS, decode: (tokens - 1) / (total - prefillS) };
}

/** llama.cpp (tools/llama-cpp) on the same file: load time, and prefill / decode speed of greedy generation. */
export async function llamaCppSpeed(
  file: string,
  prompt: string,
  tokens: number,
  threads: number,
): Promise<Speed & { load: number }> {
  const cpp = await llamaCpp();
  if (!cpp) throw new Error('llama.cpp is not installed: npm ci --prefix tools/llama-cpp --omit=optional');
  const t0 = performance.now();
  const model = await cpp.loadModel({ modelPath: file });
  const load = (performance.now() - t0) / 1000;
  const ctx = await model.createContext({ contextSize: 512, threads });
  const ids = [...(model.tokens.bos !== null ? [model.tokens.bos] : []), ...model.tokenize(prompt)];
  let first = 0,
    n = 0;
  const t1 = performance.now();
  for await (const _ of ctx.getSequence().evaluate(ids, { temperature: 0 })) {
    if (n === 0) first = performance.now();
    if (++n >= tokens) break;
  }
  const end = performance.now();
  await ctx.dispose();
  await model.dispose();
  return { load, prefill: ids.length / ((first - t1) / 1000), decode: (n - 1) / ((end - first) / 1000) };
}

/** TinyLlama 1.1B's shape (random weights: the benchmarks measure speed and memory, not quality). */
export const TINYLLAMA_CONFIG = {
  model_type: 'llama',
  vocab_size: 32000,
  hidden_size: 2048,
  intermediate_size: 5632,
  num_hidden_layers: 22,
  num_attention_heads: 32,
  num_key_value_heads: 4,
  max_position_embeddings: 2048,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  tie_word_embeddings: false,
  bos_token_id: 1,
  eos_token_id: 2,
};

/** stories260K's tokenizer with its vocabulary padded to `vocab` with unused tokens (llama.cpp wants one token per row). */
export function paddedTokenizer(vocab: number): TextTokenizer {
  const src = TextTokenizer.fromDir(resolveModelDir('stories260K'));
  const json = structuredClone(src.definition) as { model: { vocab: Record<string, number> } };
  for (let id = Object.keys(json.model.vocab).length; id < vocab; id++) json.model.vocab[`<unused${id}>`] = id;
  return new TextTokenizer(json, src.config);
}

/** xorshift32: a fast seeded generator (its state must not be 0). */
function xorshift(s: number): number {
  s ^= s << 13;
  s ^= s >>> 17;
  return s ^ (s << 5);
}

// 4096 normal(0, 1) draws (Box-Muller): random weights pick from them, fast enough for billions.
const NORMAL = (() => {
  let s = 0x2545f491;
  const uniform = () => ((s = xorshift(s)) >>> 0) / 4294967296 + 0.5 / 4294967296;
  return Float32Array.from(
    { length: 4096 },
    () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform()),
  );
})();

/** A seeded random weight: normal(0, std) matrices, unit norms (the benchmarks measure speed and memory, not quality). */
export function randomTensor(name: string, shape: number[], std = 0.02): Float32Array {
  const out = new Float32Array(shape.reduce((a, b) => a * b, 1));
  if (name.endsWith('norm.weight')) return out.fill(1);
  let s = 0x9e3779b9;
  for (let i = 0; i < name.length; i++) s = Math.imul(s ^ name.charCodeAt(i), 0x01000193) | 1;
  for (let i = 0; i < out.length; i++) out[i] = std * NORMAL[(s = xorshift(s)) & 4095];
  return out;
}
