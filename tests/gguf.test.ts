import { spawnSync } from 'node:child_process';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { LlmboxError } from '../lib/errors.js';
import { decodeGgml, encodeGgml, fromHalf, toHalf } from '../lib/models/ggml-quants.js';
import { GGML, openGguf, writeGguf } from '../lib/models/gguf-file.js';
import { readGgufModel, writeGgufModel } from '../lib/models/gguf.js';
import { generate } from '../lib/models/generate.js';
import { loadModel } from '../lib/models/load.js';
import { readModelWeights } from '../lib/models/safetensors.js';
import { seededRandom } from '../lib/util/random.js';
import { llamaCpp, llamaCppGreedy } from './helpers/llama-cpp.js';
import { STORIES, tmp } from './helpers/models.js';

const BIN = resolve(import.meta.dirname, '..', 'bin', 'llmbox.js');
const PROMPTS = [
  'Once upon a time',
  'Tom and Sue went to the park. They saw a big dog',
  'The cat said: "I am hungry!"',
];

function exportStories(type: string): string {
  const file = join(tmp(), `stories260K-${type}.gguf`);
  const r = spawnSync(process.execPath, [BIN, 'export', '-m', STORIES, '--gguf', type, '--output', file, '--json'], {
    encoding: 'utf8',
  });
  expect(r.status, r.stderr).toBe(0);
  return file;
}

const randomRows = (n: number, seed: number) => {
  const r = seededRandom(seed);
  return Float32Array.from({ length: n }, () => (r() - 0.5) * 4);
};

describe('ggml storage types', () => {
  it('f16 conversion rounds to nearest even and keeps the special values', () => {
    expect(toHalf(1)).toBe(0x3c00);
    expect(toHalf(-2)).toBe(0xc000);
    expect(toHalf(65504)).toBe(0x7bff);
    expect(toHalf(65520)).toBe(0x7c00); // rounds up to infinity
    expect(toHalf(1 + 2 ** -11)).toBe(0x3c00); // a tie, to the even mantissa
    expect(toHalf(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(toHalf(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(fromHalf(0x0001)).toBe(2 ** -24);
    expect(fromHalf(toHalf(0.333251953125))).toBe(0.333251953125);
    expect(Number.isNaN(fromHalf(toHalf(NaN)))).toBe(true);
  });

  it('q4_0 stores a block whose extreme is -8 steps exactly; q8_0 and q4_1 stay within half a step', () => {
    const block = Float32Array.from({ length: 32 }, (_, j) => ((j % 16) - 8) * 0.5);
    expect([...decodeGgml(GGML.Q4_0, encodeGgml(GGML.Q4_0, block), 32)]).toEqual([...block]);
    const x = randomRows(32 * 64, 3);
    for (const [type, levels] of [
      [GGML.Q8_0, 127],
      [GGML.Q4_1, 15],
    ] as const) {
      const y = decodeGgml(type, encodeGgml(type, x), x.length);
      for (let b = 0; b < 64; b++) {
        const xs = x.subarray(b * 32, b * 32 + 32);
        const range = type === GGML.Q8_0 ? 2 * Math.max(...xs.map(Math.abs)) : Math.max(...xs) - Math.min(...xs);
        const step = range / (type === GGML.Q8_0 ? 2 * levels : levels);
        for (let j = 0; j < 32; j++)
          expect(Math.abs(y[b * 32 + j] - xs[j])).toBeLessThanOrEqual(step / 2 + 2e-3 * step + 1e-3 * Math.abs(xs[j]));
      }
    }
  });

  it('the container round-trips metadata and tensors, and refuses a truncated file', () => {
    const file = join(tmp(), 'x.gguf');
    const data = randomRows(64, 1);
    writeGguf(
      file,
      [
        ['general.architecture', { type: 'string', value: 'llama' }],
        ['x.list', { type: 'array', of: 'string', value: ['a', 'ß', ''] }],
        ['x.f', { type: 'f32', value: 0.5 }],
        ['x.flag', { type: 'bool', value: true }],
      ],
      [{ name: 't', dims: [32, 2], type: GGML.F32, data: encodeGgml(GGML.F32, data) }],
    );
    const g = openGguf(file);
    expect(g.version).toBe(3);
    expect(g.metadata.get('x.list')).toEqual({ type: 'array', of: 'string', value: ['a', 'ß', ''] });
    expect(g.metadata.get('x.flag')?.value).toBe(true);
    expect(g.metadata.get('general.alignment')?.value).toBe(32);
    expect(g.tensors[0]).toMatchObject({ name: 't', dims: [32, 2], type: GGML.F32 });
    expect(decodeGgml(GGML.F32, g.read(g.tensors[0]), 64)).toEqual(data);
    g.close();
    const cut = join(tmp(), 'cut.gguf');
    writeFileSync(cut, Buffer.from(spawnSync('head', ['-c', '300', file]).stdout));
    expect(() => openGguf(cut)).toThrow(LlmboxError);
  });
});

describe('GGUF models', () => {
  it('f32 export reads back bit-exact: weights, logits and the tokenizer', async () => {
    const file = exportStories('f32');
    const g = readGgufModel(file);
    const hf = readModelWeights(STORIES);
    for (const [name, t] of g.raw) {
      const ref = hf.get(name) ?? (name === 'lm_head.weight' ? hf.get('model.embed_tokens.weight') : undefined);
      expect(ref, name).toBeDefined();
      expect(t.shape).toEqual(ref!.shape);
      expect(Buffer.from(t.data.buffer).equals(Buffer.from(ref!.data.buffer)), name).toBe(true);
    }
    const [local, fromGguf] = [await loadModel(STORIES), await loadModel(file)];
    // The original tokenizer.json travels inside the file (tokenizer.huggingface.json): identical, normalizer included.
    for (const text of [...PROMPTS, 'naïve café 東京 🙂', '  two  spaces ']) {
      expect(fromGguf.tokenizer!.encode(text), text).toEqual(local.tokenizer!.encode(text));
      expect(fromGguf.tokenizer!.decode(local.tokenizer!.encode(text))).toBe(
        local.tokenizer!.decode(local.tokenizer!.encode(text)),
      );
    }
    const ids = [local.tokenizer!.encode(PROMPTS[1])];
    const [a, b] = [local.model.forward(ids), fromGguf.model.forward(ids)];
    expect(
      tf
        .max(
          tf.abs(
            tf.sub(
              local.model.logits(a.reshape([-1, 64]) as tf.Tensor2D),
              fromGguf.model.logits(b.reshape([-1, 64]) as tf.Tensor2D),
            ),
          ),
        )
        .dataSync()[0],
    ).toBe(0);
    tf.dispose([a, b]);
    local.model.dispose();
    fromGguf.model.dispose();
  });

  it('q8_0, q4_0 and q4_1 exports load and stay close to the float model', async () => {
    const local = await loadModel(STORIES);
    const ids = [local.tokenizer!.encode(PROMPTS[1])];
    const logp = (m: typeof local) =>
      tf.tidy(() => tf.logSoftmax(m.model.logits(m.model.forward(ids).reshape([-1, 64]) as tf.Tensor2D)));
    const ref = logp(local);
    const kl: Record<string, number> = {};
    for (const type of ['q8_0', 'q4_1', 'q4_0']) {
      const q = await loadModel(exportStories(type));
      const lq = logp(q);
      kl[type] = tf.tidy(() => tf.mean(tf.sum(tf.mul(tf.exp(ref), tf.sub(ref, lq)), -1))).dataSync()[0];
      lq.dispose();
      q.model.dispose();
    }
    ref.dispose();
    local.model.dispose();
    // Mean KL divergence per token to the float model: q8_0 is nearly lossless, 4-bit clearly worse.
    expect(kl.q8_0).toBeLessThan(1e-3);
    expect(kl.q4_0).toBeLessThan(0.1);
    expect(kl.q4_1).toBeLessThan(0.1);
    expect(kl.q4_0).toBeGreaterThan(kl.q8_0);
  });

  it('a GGUF without the embedded tokenizer.json gets one rebuilt from its SentencePiece vocabulary', async () => {
    const local = await loadModel(STORIES);
    const file = join(tmp(), 'spm-only.gguf');
    const m = {
      config: local.model.config,
      raw: local.model.toRaw(),
      tokenizer: local.tokenizer!,
      name: 'stories260K',
    };
    writeGgufModel(file, m, 'f32', { embedTokenizerJson: false });
    const g = readGgufModel(file);
    expect((g.tokenizer!.json.model as { merges: unknown[] }).merges.length).toBe(
      (local.tokenizer!.definition.model as { merges: unknown[] }).merges.length,
    );
    const rebuilt = (await loadModel(file)).tokenizer!;
    // stories260K's own normalizer also strips leading and doubled spaces; the SentencePiece view cannot say so.
    for (const text of [...PROMPTS, 'naïve café 東京 🙂'])
      expect(rebuilt.encode(text), text).toEqual(local.tokenizer!.encode(text));
    expect(rebuilt.bosTokenId).toBe(1);
    expect(rebuilt.eosTokenId).toBe(2);
    local.model.dispose();
  });

  it('a tokenizer.json beside the file is used as it is', async () => {
    const dir = tmp();
    copyFileSync(exportStories('f16'), join(dir, 'm.gguf'));
    writeFileSync(
      join(dir, 'tokenizer.json'),
      JSON.stringify({ ...readJson(join(STORIES, 'tokenizer.json')), added_tokens: [] }),
    );
    const g = readGgufModel(join(dir, 'm.gguf'));
    expect(g.tokenizer!.json.added_tokens).toEqual([]);
  });

  it('refuses what it cannot read, naming the field', async () => {
    const file = join(tmp(), 'gpt2.gguf');
    writeGguf(file, [['general.architecture', { type: 'string', value: 'gpt2' }]], []);
    expect(() => readGgufModel(file)).toThrow(/GGUF architecture gpt2 is not supported/);
    const bad = spawnSync(
      process.execPath,
      [BIN, 'export', '-m', STORIES, '--gguf', 'q5_k', '--output', join(tmp(), 'x.gguf')],
      { encoding: 'utf8' },
    );
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/Allowed choices are f32, f16, bf16, q8_0, q4_0, q4_1/);
  });
});

function readJson(file: string): Record<string, unknown> {
  return JSON.parse(spawnSync('cat', [file], { encoding: 'utf8' }).stdout);
}

const LLAMA_CPP = await llamaCpp();
const REQUIRED = !!process.env.CI;

describe.skipIf(!LLAMA_CPP && !REQUIRED)('llama.cpp reads what llmbox writes', () => {
  // Float types: the same text token for token. Quantized: llama.cpp also rounds the activations to
  // q8_0 before each dot product (its vec_dot_type), llmbox multiplies in float32, so a near-tie in a
  // 260K model can flip late; the prompt tokens and the opening tokens must agree.
  it.each([
    ['f32', 24],
    ['f16', 24],
    ['q8_0', 5],
    ['q4_0', 5],
  ] as const)(
    '%s: the same prompt tokens and greedy text in llama.cpp and llmbox (first %i tokens at least)',
    async (type, agree) => {
      expect(LLAMA_CPP, 'CI installs llama.cpp: npm ci --prefix tools/llama-cpp --omit=optional').not.toBeNull();
      const file = exportStories(type);
      const cpp = await LLAMA_CPP!.loadModel({ modelPath: file });
      const ours = await loadModel(file);
      try {
        for (const prompt of PROMPTS) {
          const theirs = await llamaCppGreedy(cpp, prompt, 24);
          const [r] = await generate(ours, [prompt], { maxNewTokens: 24, stopAtBos: false, stop: [] });
          expect(r.promptIds, prompt).toEqual(theirs.prompt);
          expect(r.ids.slice(0, agree), prompt).toEqual(theirs.ids.slice(0, agree));
          if (agree === 24) expect(ours.tokenizer!.decode(r.ids), prompt).toBe(ours.tokenizer!.decode(theirs.ids));
        }
      } finally {
        await cpp.dispose();
        ours.model.dispose();
      }
    },
  );
});
