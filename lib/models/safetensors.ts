import { closeSync, openSync, readSync, readFileSync, fstatSync, writeSync } from 'node:fs';
import { resolve, sep } from 'node:path';
import { allocWeightBytes } from '../engine/native.js';
import { LlmboxError } from '../errors.js';
import { writeFileAtomicWith } from '../util/fs.js';
import { mapRanges } from './mapped.js';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'I32' | 'I64';

export interface RawTensor {
  shape: number[];
  /** Values converted to float32 (floats) or int32 (integers). */
  data: Float32Array | Int32Array;
}

const BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2, I32: 4, I64: 8 };
const MAX_HEADER = 100 * 1024 * 1024;

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

function decode(dtype: SafetensorsDtype, bytes: Uint8Array): Float32Array | Int32Array {
  const copy = bytes.byteOffset % 8 ? new Uint8Array(bytes) : bytes; // typed views need aligned offsets
  switch (dtype) {
    case 'F32':
      return new Float32Array(copy.buffer, copy.byteOffset, copy.byteLength / 4);
    case 'I32':
      return new Int32Array(copy.buffer, copy.byteOffset, copy.byteLength / 4);
    case 'I64': {
      const src = new BigInt64Array(copy.buffer, copy.byteOffset, copy.byteLength / 8);
      return Int32Array.from(src, (v) => Number(v));
    }
    case 'BF16': {
      const src = new Uint16Array(copy.buffer, copy.byteOffset, copy.byteLength / 2);
      const out = new Uint32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
      return new Float32Array(out.buffer);
    }
    case 'F16': {
      const src = new Uint16Array(copy.buffer, copy.byteOffset, copy.byteLength / 2);
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = f16ToF32(src[i]);
      return out;
    }
  }
}

/** A tensor's bytes as the file stores them (little-endian), for holding f16/bf16 matrices without a float32 copy. */
export interface StoredTensor {
  shape: number[];
  dtype: SafetensorsDtype;
  bytes: Uint8Array;
}

/**
 * Takes a tensor as stored instead of as float32: returns true when it has kept `t` (which is then
 * left out of the map readSafetensors returns). Lets a loader hold bf16 matrices or pack them one at
 * a time, so a model is never wholly in float32 at once.
 */
export type TakeStored = (name: string, t: StoredTensor) => boolean;

interface Span {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * Reads every tensor of a .safetensors file, validating the header against the file; `take` may keep
 * some as stored. With `mmap`, the file is mapped and the stored bytes are views of the mapping
 * (copy-on-write: changing them never changes the file).
 */
export function readSafetensors(
  file: string,
  take?: TakeStored,
  opts: { mmap?: boolean } = {},
): Map<string, RawTensor> {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new LlmboxError(`cannot open weights: ${(e as Error).message}`, { file, fix: 'check the model folder path' });
  }
  try {
    const { spans, dataStart } = readHeader(fd, file);
    const views = opts.mmap
      ? mapRanges(
          file,
          spans.map((s) => [dataStart + s.begin, dataStart + s.end]),
        )
      : [];
    const out = new Map<string, RawTensor>();
    for (const [i, s] of spans.entries()) {
      const bytes = views[i] ?? readAt(fd, s.end - s.begin, dataStart + s.begin);
      if (take?.(s.name, { shape: s.shape, dtype: s.dtype, bytes })) continue;
      out.set(s.name, { shape: s.shape, data: decode(s.dtype, bytes) });
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

/** `length` bytes of the file at `position` in a buffer of their own (reads of over 2 GiB go in pieces). */
function readAt(fd: number, length: number, position: number): Uint8Array {
  const out = allocWeightBytes(length);
  for (let done = 0; done < length;) {
    const n = readSync(fd, out, done, Math.min(length - done, 1 << 30), position + done);
    if (n <= 0) throw new Error(`short read at byte ${position + done}`);
    done += n;
  }
  return out;
}

/** The header's tensors in file order, each checked against the file's size, and where their data starts. */
function readHeader(fd: number, file: string): { spans: Span[]; dataStart: number } {
  const size = fstatSync(fd).size;
  const lenBuf = Buffer.alloc(8);
  if (size < 8 || readSync(fd, lenBuf, 0, 8, 0) !== 8) {
    throw new LlmboxError('corrupt safetensors: file shorter than its 8-byte header length', { file });
  }
  const headerLen = Number(lenBuf.readBigUInt64LE(0));
  if (headerLen <= 0 || headerLen > MAX_HEADER || 8 + headerLen > size) {
    throw new LlmboxError(`corrupt safetensors: header length ${headerLen} does not fit a ${size}-byte file`, {
      file,
      fix: 're-download or re-export the weights',
    });
  }
  const headerBuf = Buffer.alloc(headerLen);
  readSync(fd, headerBuf, 0, headerLen, 8);
  let header: Record<string, HeaderEntry | Record<string, string>>;
  try {
    header = JSON.parse(headerBuf.toString('utf8'));
  } catch (e) {
    throw new LlmboxError(`corrupt safetensors: header is not JSON (${(e as Error).message})`, { file });
  }
  const dataStart = 8 + headerLen;
  const dataLen = size - dataStart;
  const spans: Span[] = [];
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const e = entry as HeaderEntry;
    if (!(e.dtype in BYTES)) {
      throw new LlmboxError(`unsupported dtype ${e.dtype}`, {
        file,
        field: `${name}.dtype`,
        fix: 'llmbox reads F32, F16, BF16 (converted to float32), I32 and I64; convert the weights first',
      });
    }
    const dtype = e.dtype as SafetensorsDtype;
    const [begin, end] = e.data_offsets ?? [];
    const numel = (e.shape ?? []).reduce((a, b) => a * b, 1);
    if (
      !Array.isArray(e.shape) ||
      e.shape.some((d) => !Number.isInteger(d) || d < 0) ||
      !Number.isInteger(begin) ||
      !Number.isInteger(end) ||
      !(begin >= 0) ||
      !(end <= dataLen) ||
      end - begin !== numel * BYTES[dtype]
    ) {
      throw new LlmboxError(
        `corrupt safetensors: tensor ${name} has shape [${e.shape}] (${numel * BYTES[dtype]} bytes of ${dtype}) ` +
          `but data_offsets [${begin}, ${end}] in a ${dataLen}-byte body`,
        { file, field: `${name}.data_offsets` },
      );
    }
    spans.push({ name, dtype, shape: e.shape, begin, end });
  }
  // Two tensors reading the same bytes would load as believable weights: the spans must not overlap.
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < spans.length; i++) {
    const [a, b] = [spans[i - 1], spans[i]];
    if (b.begin < a.end) {
      throw new LlmboxError(
        `corrupt safetensors: tensors ${a.name} [${a.begin}, ${a.end}] and ${b.name} [${b.begin}, ${b.end}] overlap`,
        {
          file,
          field: `${b.name}.data_offsets`,
          fix: 'the file is damaged or hand-edited: use the original weights',
        },
      );
    }
  }
  return { spans, dataStart };
}

/** A tensor to write in `dtype`, its bytes given in pieces (a large model need never be in memory at once). */
export interface TensorSource {
  shape: number[];
  dtype: SafetensorsDtype;
  chunks(): Iterable<Uint8Array>;
}

/** Writes float32/int32 tensors as a .safetensors file (atomically), in sorted name order. */
export function writeSafetensors(file: string, tensors: Map<string, RawTensor>, metadata: Record<string, string> = {}) {
  const sources = new Map<string, TensorSource>();
  for (const [name, t] of tensors) {
    const d = t.data;
    sources.set(name, {
      shape: t.shape,
      dtype: d instanceof Int32Array ? 'I32' : 'F32',
      chunks: () => [new Uint8Array(d.buffer, d.byteOffset, d.byteLength)],
    });
  }
  writeSafetensorsFrom(file, sources, metadata);
}

/** Writes tensors of any stored dtype as a .safetensors file (atomically), in sorted name order, piece by piece. */
export function writeSafetensorsFrom(
  file: string,
  tensors: Map<string, TensorSource>,
  metadata: Record<string, string> = {},
) {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', ...metadata } };
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const bytes = t.shape.reduce((a, b) => a * b, 1) * BYTES[t.dtype];
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // Pad so tensor data starts 8-byte aligned, as the reference implementation does.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  writeFileAtomicWith(file, (fd) => {
    writeAll(fd, len);
    writeAll(fd, headerBytes);
    for (const name of names) {
      const t = tensors.get(name)!;
      const expected = (header[name] as HeaderEntry).data_offsets;
      let written = 0;
      for (const c of t.chunks()) written += writeAll(fd, c);
      if (written !== expected[1] - expected[0])
        throw new Error(`tensor ${name}: ${written} bytes given for ${expected[1] - expected[0]}`);
    }
  });
}

function writeAll(fd: number, bytes: Uint8Array): number {
  for (let done = 0; done < bytes.byteLength;) done += writeSync(fd, bytes, done, bytes.byteLength - done);
  return bytes.byteLength;
}

/** Reads a model's weights: model.safetensors, or the shards listed by model.safetensors.index.json (`base` for another name than model). */
export function readModelWeights(
  dir: string,
  base = 'model',
  take?: TakeStored,
  opts: { mmap?: boolean } = {},
): Map<string, RawTensor> {
  const single = `${dir}/${base}.safetensors`;
  const index = `${dir}/${base}.safetensors.index.json`;
  let indexJson: { weight_map?: Record<string, string> } | undefined;
  try {
    indexJson = JSON.parse(readFileSync(index, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new LlmboxError(`cannot parse shard index: ${(e as Error).message}`, { file: index });
    }
  }
  if (!indexJson) {
    try {
      return readSafetensors(single, take, opts);
    } catch (e) {
      if (e instanceof LlmboxError && /cannot open/.test(e.message)) {
        throw new LlmboxError('no weights found', {
          file: single,
          fix: 'the model folder needs model.safetensors or model.safetensors.index.json (Hugging Face layout)',
        });
      }
      throw e;
    }
  }
  if (!indexJson.weight_map || typeof indexJson.weight_map !== 'object') {
    throw new LlmboxError('shard index has no weight_map', { file: index, field: 'weight_map' });
  }
  const out = new Map<string, RawTensor>();
  const taken = new Set<string>();
  const keep: TakeStored | undefined = take && ((name, t) => take(name, t) && taken.add(name) !== undefined);
  const root = resolve(dir);
  for (const shard of new Set(Object.values(indexJson.weight_map))) {
    // A shard path that leaves the model folder reads someone else's file.
    const path = resolve(root, String(shard));
    if (!path.startsWith(root + sep)) {
      throw new LlmboxError(`shard path ${JSON.stringify(shard)} leaves the model folder`, {
        file: index,
        field: 'weight_map',
        fix: 'shards are file names inside the model folder',
      });
    }
    for (const [k, v] of readSafetensors(path, keep, opts)) out.set(k, v);
  }
  for (const name of Object.keys(indexJson.weight_map)) {
    if (!out.has(name) && !taken.has(name)) {
      throw new LlmboxError(`tensor ${name} is listed in the index but missing from its shard`, {
        file: `${dir}/${indexJson.weight_map[name]}`,
        field: name,
      });
    }
  }
  return out;
}
