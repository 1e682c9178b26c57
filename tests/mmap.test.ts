import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { loadNative, mapWeightFile } from '../lib/engine/native.js';
import { mapRanges } from '../lib/models/mapped.js';
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

/** A view into a larger buffer (a mapping of the file holds many tensors; a read tensor has a buffer of its own). */
const isView = (a: Uint8Array) => a.byteLength < a.buffer.byteLength;
const allViews = (m: LoadedModel) => [...m.model.packed.values()].every((p) => isView(p.weights));
const noViews = (m: LoadedModel) => [...m.model.packed.values()].every((p) => !isView(p.weights));

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
  it('a mapped range is its bytes, copy-on-write; a missing file, an empty range or one past the end are refused', () => {
    const dir = tmp();
    const file = join(dir, 'w.bin');
    const bytes = Uint8Array.from({ length: 3 << 20 }, (_, i) => (i * 7919) & 255);
    writeFileSync(file, bytes);
    for (const [offset, length] of [
      [0, bytes.length],
      [4096, 100],
      [(2 << 20) + 12345, 777777],
    ]) {
      const m = mapWeightFile(file, offset, length)!;
      expect(m.byteLength).toBe(length);
      expect(Buffer.compare(Buffer.from(m), Buffer.from(bytes.subarray(offset, offset + length)))).toBe(0);
      m[5] = m[5] ^ 1; // a private copy of the page: the file keeps its byte
      expect(readFileSync(file)[offset + 5]).toBe(bytes[offset + 5]);
    }
    const missing = join(dir, 'missing.bin');
    expect(() => loadNative().addon!.mapFile(missing, 0, 1)).toThrow(/cannot map .*missing\.bin: No such file/);
    expect(mapWeightFile(missing, 0, 1)).toBeNull(); // the caller reads it, and says what is wrong
    for (const [offset, length] of [
      [0, 0],
      [bytes.length - 10, 11],
      [-1, 5],
    ])
      expect(() => loadNative().addon!.mapFile(file, offset, length)).toThrow(/Invalid argument/);
  });

  it('ranges are mapped in windows that end where a range ends; unaligned and empty ones are left to be read', () => {
    const file = join(tmp(), 'w.bin');
    const bytes = Uint8Array.from({ length: 1 << 20 }, (_, i) => (i * 31 + (i >> 8)) & 255);
    writeFileSync(file, bytes);
    const ranges: [number, number][] = [];
    for (let at = 0; at + 9000 < bytes.length; at += 9000) ranges.push([at, at + 8000 + (at % 7) * 100]);
    ranges.push([100001, 100500], [200000, 200000], [0, bytes.length]); // unaligned, empty, larger than a window
    const views = mapRanges(file, [...ranges].reverse(), 64 << 10).reverse();
    const windows = new Set(views.map((v) => v?.buffer));
    ranges.forEach(([begin, end], i) => {
      const v = views[i];
      if (i === ranges.length - 3 || i === ranges.length - 2) return expect(v).toBeNull();
      expect(Buffer.compare(Buffer.from(v!), Buffer.from(bytes.subarray(begin, end))), `range ${i}`).toBe(0);
      expect(v!.buffer.byteLength).toBeLessThanOrEqual(Math.max(64 << 10, end - begin));
    });
    expect(windows.size).toBeGreaterThan(10);
  });

  it('a GGUF loads mapped and read alike: same matrices and logits, and q and k are un-permuted without touching the file', async () => {
    const file = join(tmp(), 'stories260K-q8_0.gguf');
    llmbox(['export', '-m', STORIES, '--gguf', 'q8_0', '--output', file, '--json']);
    const before = sha(file);
    const mapped = await loadModel(file);
    const read = await loadModel(file, { mmap: false });
    // The matrices other than q and k (un-permuted in copies of their own) are views of the mapping.
    const qk = (name: string) => /\.(q_proj|k_proj)\./.test(name);
    const ofFile = [...mapped.model.packed].map(([name, p]) => [qk(name), isView(p.weights)]);
    expect(ofFile.filter(([isQk]) => !isQk).length).toBeGreaterThan(0);
    expect(ofFile.every(([isQk, view]) => isQk !== view)).toBe(true);
    expect(noViews(read)).toBe(true);
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
    expect(allViews(mapped)).toBe(true);
    const read = await loadModel(dir, { mmap: false });
    expect(noViews(read)).toBe(true);
    const want = logits(read);
    expect(logits(mapped)).toEqual(want);
    const odd = unalignedCopy(dir);
    const fromOdd = await loadModel(odd);
    expect(noViews(fromOdd)).toBe(true);
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
