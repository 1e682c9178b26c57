import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { loadNative, mapWeightFile } from '../lib/engine/native.js';
import { GGML } from '../lib/models/gguf-file.js';
import { encodeGgml } from '../lib/models/ggml-quants.js';
import { loadModel, type LoadedModel } from '../lib/models/load.js';
import {
  readModelWeights,
  readSafetensors,
  writeSafetensorsFrom,
  type TensorSource,
} from '../lib/models/safetensors.js';
import { STORIES, tmp } from './helpers/models.js';

const BIN = resolve(import.meta.dirname, '..', 'bin', 'llmbox.js');
const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

function llmbox(args: string[]): string {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

function logits(m: LoadedModel): Float32Array {
  const ids = [m.tokenizer!.encode('Tom and Sue went to the park. They saw a big dog')];
  return tf.tidy(
    () => m.model.logits(m.model.forward(ids).reshape([-1, 64]) as tf.Tensor2D).dataSync() as Float32Array,
  );
}

/** Whether every packed matrix of `m` is a view of one buffer `size` bytes long: the mapped file. */
const viewsOfFile = (m: LoadedModel, size: number) =>
  [...m.model.packed.values()].every((p) => p.weights.buffer.byteLength === size);

/** stories260K as a bf16 folder (its matrices kept as stored, where the add-on multiplies them). */
function bf16Folder(): string {
  const dir = tmp();
  const sources = new Map<string, TensorSource>();
  for (const [name, t] of readModelWeights(STORIES))
    sources.set(name, { shape: t.shape, dtype: 'BF16', chunks: () => [encodeGgml(GGML.BF16, t.data as Float32Array)] });
  writeSafetensorsFrom(join(dir, 'model.safetensors'), sources);
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json'])
    copyFileSync(join(STORIES, f), join(dir, f));
  return dir;
}

/** The same folder with one more byte of header padding, so no tensor starts 8-byte aligned. */
function unalignedCopy(dir: string): string {
  const out = tmp();
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json'])
    copyFileSync(join(dir, f), join(out, f));
  const src = readFileSync(join(dir, 'model.safetensors'));
  const len = Number(src.readBigUInt64LE(0));
  const header = Buffer.concat([src.subarray(8, 8 + len), Buffer.from(' ')]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(header.length));
  writeFileSync(join(out, 'model.safetensors'), Buffer.concat([prefix, header, src.subarray(8 + len)]));
  return out;
}

describe.skipIf(!loadNative().addon)('weights mapped from their files', () => {
  it('a mapped file is its bytes, copy-on-write, and a missing or empty file is refused by name', () => {
    const dir = tmp();
    const file = join(dir, 'w.bin');
    const bytes = Uint8Array.from({ length: 3 << 20 }, (_, i) => (i * 7919) & 255);
    writeFileSync(file, bytes);
    const m = mapWeightFile(file)!;
    expect(m.byteLength).toBe(bytes.length);
    expect(Buffer.compare(Buffer.from(m), Buffer.from(bytes))).toBe(0);
    m[5] = 99; // a private copy of the page: the file keeps its byte
    expect(m[5]).toBe(99);
    expect(readFileSync(file)[5]).toBe(bytes[5]);
    expect(() => mapWeightFile(join(dir, 'missing.bin'))).toThrow(/cannot map .*missing\.bin: No such file/);
    writeFileSync(join(dir, 'empty.bin'), '');
    expect(() => mapWeightFile(join(dir, 'empty.bin'))).toThrow(/cannot map .*empty\.bin: Invalid argument/);
  });

  it('a GGUF loads mapped and read alike: same matrices and logits, and q and k are un-permuted without touching the file', async () => {
    const file = join(tmp(), 'stories260K-q8_0.gguf');
    llmbox(['export', '-m', STORIES, '--gguf', 'q8_0', '--output', file, '--json']);
    const before = sha(file);
    const mapped = await loadModel(file);
    const read = await loadModel(file, { mmap: false });
    const size = statSync(file).size;
    // The matrices other than q and k (un-permuted in copies of their own) are views of the mapping.
    const qk = (name: string) => /\.(q_proj|k_proj)\./.test(name);
    const ofFile = [...mapped.model.packed].map(([name, p]) => [qk(name), p.weights.buffer.byteLength === size]);
    expect(ofFile.filter(([isQk]) => !isQk).length).toBeGreaterThan(0);
    expect(ofFile.every(([isQk, view]) => isQk !== view)).toBe(true);
    expect(viewsOfFile(read, size)).toBe(false);
    for (const [name, p] of mapped.model.packed)
      expect(Buffer.compare(Buffer.from(p.weights), Buffer.from(read.model.packed.get(name)!.weights)), name).toBe(0);
    expect(logits(mapped)).toEqual(logits(read));
    expect(sha(file)).toBe(before);
    mapped.model.dispose();
    read.model.dispose();
  });

  it('a bf16 folder loads mapped and read alike; tensors a header leaves unaligned are read', async () => {
    const dir = bf16Folder();
    const file = join(dir, 'model.safetensors');
    const mapped = await loadModel(dir);
    expect(mapped.model.packed.size).toBeGreaterThan(0);
    expect(viewsOfFile(mapped, statSync(file).size)).toBe(true);
    const read = await loadModel(dir, { mmap: false });
    expect(viewsOfFile(read, statSync(file).size)).toBe(false);
    const want = logits(read);
    expect(logits(mapped)).toEqual(want);
    const odd = unalignedCopy(dir);
    const fromOdd = await loadModel(odd);
    expect(viewsOfFile(fromOdd, statSync(join(odd, 'model.safetensors')).size)).toBe(false);
    expect(logits(fromOdd)).toEqual(want);
    for (const m of [mapped, read, fromOdd]) m.model.dispose();
    // The float32 values decoded from a mapping are the file's.
    const a = readSafetensors(file, undefined, { mmap: true });
    const b = readSafetensors(file);
    for (const [name, t] of b) expect(a.get(name)!.data, name).toEqual(t.data);
  });

  it('--no-mmap gives the same greedy text on the command line', () => {
    const dir = bf16Folder();
    const args = ['generate', '-m', dir, '-p', 'Once upon a time', '--max-new-tokens', '12', '--json'];
    const text = (out: string) => JSON.parse(out).text as string;
    expect(text(llmbox(['--no-mmap', ...args]))).toBe(text(llmbox(args)));
  });
});
