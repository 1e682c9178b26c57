/**
 * llmbox and llama.cpp side by side on the same GGUF files (stories260K exported as each type):
 * prefill and decode tokens/s with the same thread count, in one run (best of three each).
 *
 *   npm ci --prefix tools/llama-cpp --omit=optional   # once
 *   npm run bench:gguf [-- --threads 1 --tokens 128]
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initEngine } from '../lib/engine/index.js';
import { generate } from '../lib/models/generate.js';
import { writeGgufModel, type GgufOutType } from '../lib/models/gguf.js';
import { loadModel } from '../lib/models/load.js';
import { llamaCpp } from '../tests/helpers/llama-cpp.js';

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const THREADS = Number(arg('threads', '1'));
const TOKENS = Number(arg('tokens', '128'));
const PROMPT =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends.';

await initEngine({ threads: THREADS });
const cpp = await llamaCpp();
if (!cpp) throw new Error('llama.cpp is not installed: npm ci --prefix tools/llama-cpp --omit=optional');
const base = await loadModel('stories260K');
const dir = mkdtempSync(join(tmpdir(), 'llmbox-gguf-bench-'));

async function llamaCppRun(file: string) {
  const model = await cpp!.loadModel({ modelPath: file });
  const ctx = await model.createContext({ contextSize: 512, threads: THREADS });
  const ids = [model.tokens.bos!, ...model.tokenize(PROMPT)];
  const seq = ctx.getSequence();
  let first = 0;
  const t0 = performance.now();
  let n = 0;
  for await (const _ of seq.evaluate(ids, { temperature: 0 })) {
    if (n === 0) first = performance.now();
    if (++n >= TOKENS) break;
  }
  const end = performance.now();
  await ctx.dispose();
  await model.dispose();
  return { prefill: ids.length / ((first - t0) / 1000), decode: (n - 1) / ((end - first) / 1000) };
}

function llmboxRun(m: Awaited<ReturnType<typeof loadModel>>) {
  const promptIds = m.tokenizer!.encode(PROMPT);
  generate(m, [PROMPT], { maxNewTokens: 4, stopAtBos: false }); // warm-up
  const t0 = performance.now();
  generate(m, [PROMPT], { maxNewTokens: 1, stopAtBos: false });
  const t1 = performance.now();
  const t2 = performance.now();
  generate(m, [PROMPT], { maxNewTokens: TOKENS, stopAtBos: false, stop: [] });
  const t3 = performance.now();
  const prefillS = (t1 - t0) / 1000;
  return { prefill: promptIds.length / prefillS, decode: (TOKENS - 1) / ((t3 - t2) / 1000 - prefillS) };
}

const rows: string[] = [];
for (const type of ['f32', 'f16', 'q8_0', 'q4_0'] as GgufOutType[]) {
  const file = join(dir, `${type}.gguf`);
  writeGgufModel(
    file,
    {
      config: base.model.config,
      raw: base.model.toRaw(),
      tokenizer: base.tokenizer!,
      tokenizerJson: base.tokenizer!.definition,
      name: 'stories260K',
    },
    type,
  );
  // Best of three for each side: the first runs pay for JIT and allocation.
  const best = (rs: { prefill: number; decode: number }[]) => ({
    prefill: Math.max(...rs.map((r) => r.prefill)),
    decode: Math.max(...rs.map((r) => r.decode)),
  });
  const theirs = best([await llamaCppRun(file), await llamaCppRun(file), await llamaCppRun(file)]);
  const m = await loadModel(file);
  const ours = best([llmboxRun(m), llmboxRun(m), llmboxRun(m)]);
  m.model.dispose();
  rows.push(
    `${type.padEnd(6)} ${ours.prefill.toFixed(0).padStart(10)} ${theirs.prefill.toFixed(0).padStart(12)} ${(ours.prefill / theirs.prefill).toFixed(2).padStart(6)}x ${ours.decode.toFixed(0).padStart(10)} ${theirs.decode.toFixed(0).padStart(12)} ${(ours.decode / theirs.decode).toFixed(2).padStart(6)}x`,
  );
}
console.log(
  `stories260K GGUF, ${THREADS} thread(s), prompt of ${base.tokenizer!.encode(PROMPT).length} tokens, ${TOKENS} generated (tokens/s)`,
);
console.log('type   llmbox pre  llama.cpp pre  ratio  llmbox dec  llama.cpp dec  ratio');
for (const r of rows) console.log(r);
