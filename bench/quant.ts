/**
 * Quality of GGUF weight types, as llama.cpp's perplexity tool reports it: each type written by
 * `llmbox export --gguf`, loaded back, and scored on real text (TinyStories, the shipped slice)
 * against the float model: perplexity, mean KL divergence per token, top-1 agreement, file size and
 * the bytes the loaded weights take as held. NF4 (QLoRA's type, `--load-in-4bit --quant nf4`) has no
 * GGUF form: it is made at load from the float model.
 *
 *   npm run bench:quant [-- --model DIR --stories 40]
 */
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tf } from '../lib/engine/index.js';
import { writeGgufModel, type GgufOutType } from '../lib/models/gguf.js';
import { loadModel, type LoadedModel } from '../lib/models/load.js';
import { defaultDataDir } from '../lib/util/paths.js';
import { arg } from './common.js';

const MODEL = arg('model') ?? 'stories260K';
const STORIES = Number(arg('stories') ?? '40');
const TYPES: GgufOutType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_1', 'q4_0'];

const base = await loadModel(MODEL);
const tok = base.tokenizer!;
const text = readFileSync(join(defaultDataDir(), 'pretrain_text', 'tinystories_sample.txt'), 'utf8');
const window = Math.min(256, base.model.config.maxPositionEmbeddings);
const docs = text
  .split('<|endoftext|>')
  .map((s) => s.trim())
  .filter(Boolean)
  .slice(0, STORIES)
  .map((s) => tok.encode(s).slice(0, window));

/** Log-probabilities [positions, vocab] of each document's next tokens, concatenated. */
function logProbs(m: LoadedModel): tf.Tensor2D {
  return tf.tidy(() => {
    const parts = docs.map((ids) => {
      const h = m.model.forward([ids.slice(0, -1)]).reshape([ids.length - 1, m.model.config.hiddenSize]) as tf.Tensor2D;
      return tf.logSoftmax(m.model.logits(h)) as tf.Tensor2D;
    });
    return tf.concat(parts, 0);
  });
}

const targets = tf.tensor1d(
  docs.flatMap((ids) => ids.slice(1)),
  'int32',
);
const ref = logProbs(base);
const dir = mkdtempSync(join(tmpdir(), 'llmbox-quant-'));
const rows: { type: string; mib: number | null; heldMib: number; ppl: number; kl: number; top1: number }[] = [];
for (const type of [...TYPES, 'nf4' as const]) {
  const file = join(dir, `${type}.gguf`);
  if (type !== 'nf4')
    writeGgufModel(file, { config: base.model.config, raw: base.model.toRaw(), tokenizer: tok, name: MODEL }, type);
  const m = type === 'nf4' ? await loadModel(MODEL, { quantize: 'nf4' }) : await loadModel(file);
  const lp = logProbs(m);
  const [ppl, kl, top1] = tf.tidy(() => {
    const picked = tf.sum(tf.mul(lp, tf.oneHot(targets, lp.shape[1])), 1);
    const klPerToken = tf.sum(tf.mul(tf.exp(ref), tf.sub(ref, lp)), 1);
    const agree = tf.equal(tf.argMax(lp, 1), tf.argMax(ref, 1));
    return [
      Math.exp(-tf.mean(picked).dataSync()[0]),
      tf.mean(klPerToken).dataSync()[0],
      tf.mean(tf.cast(agree, 'float32')).dataSync()[0],
    ];
  });
  const mib = type === 'nf4' ? null : statSync(file).size / 2 ** 20;
  rows.push({ type, mib, heldMib: m.model.weightBytes() / 2 ** 20, ppl, kl, top1 });
  lp.dispose();
  m.model.dispose();
}
const f32 = rows[0];
console.log(`${MODEL}: ${docs.length} stories, ${targets.size} scored tokens (windows of ${window})`);
console.log('type    file MiB  size vs f32  held MiB  perplexity  ppl vs f32  mean KL     top-1 agree');
for (const r of rows) {
  const file = r.mib === null ? ['-', '-'] : [r.mib.toFixed(3), (r.mib / f32.mib!).toFixed(3)];
  console.log(
    `${r.type.padEnd(7)} ${file[0].padStart(8)}  ${file[1].padStart(11)}  ${r.heldMib.toFixed(3).padStart(8)}  ${r.ppl.toFixed(4).padStart(10)}  ${(r.ppl / f32.ppl).toFixed(4).padStart(10)}  ${r.kl.toExponential(3).padStart(10)}  ${(100 * r.top1).toFixed(2).padStart(10)}%`,
  );
}
