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
import { writeGgufModel, type GgufOutType } from '../lib/models/gguf.js';
import { loadModel } from '../lib/models/load.js';
import { arg, llamaCppSpeed, llmboxSpeed } from './common.js';

const THREADS = Number(arg('threads') ?? '1');
const TOKENS = Number(arg('tokens') ?? '128');
const PROMPT =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends.';

await initEngine({ threads: THREADS });
const base = await loadModel('stories260K');
const dir = mkdtempSync(join(tmpdir(), 'llmbox-gguf-bench-'));

const rows: string[] = [];
for (const type of ['f32', 'f16', 'q8_0', 'q4_0'] as GgufOutType[]) {
  const file = join(dir, `${type}.gguf`);
  writeGgufModel(
    file,
    {
      config: base.model.config,
      raw: base.model.toRaw(),
      tokenizer: base.tokenizer!,
      name: 'stories260K',
    },
    type,
  );
  // Best of three for each side: the first runs pay for JIT and allocation.
  const best = (rs: { prefill: number; decode: number }[]) => ({
    prefill: Math.max(...rs.map((r) => r.prefill)),
    decode: Math.max(...rs.map((r) => r.decode)),
  });
  const theirs = best([
    await llamaCppSpeed(file, PROMPT, TOKENS, THREADS),
    await llamaCppSpeed(file, PROMPT, TOKENS, THREADS),
    await llamaCppSpeed(file, PROMPT, TOKENS, THREADS),
  ]);
  const m = await loadModel(file);
  const ours = best([
    await llmboxSpeed(m, PROMPT, TOKENS),
    await llmboxSpeed(m, PROMPT, TOKENS),
    await llmboxSpeed(m, PROMPT, TOKENS),
  ]);
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
