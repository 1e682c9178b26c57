/**
 * The GGUF container (llama.cpp's model file, version 3): typed metadata, tensor descriptions and
 * the tensor data, aligned. This module reads and writes the container only; what the keys and
 * tensors mean for a LLaMA model is gguf.ts.
 */
import { closeSync, openSync, readSync, fstatSync, writeSync } from 'node:fs';
import { allocWeightBytes } from '../engine/native.js';
import { mapRanges } from './mapped.js';
import { LlmboxError } from '../errors.js';
import { writeFileAtomicWith } from '../util/fs.js';

/** ggml tensor types llmbox reads or writes. */
export const GGML = { F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q8_0: 8, BF16: 30 } as const;
export type GgmlType = (typeof GGML)[keyof typeof GGML];
// 256 is llmbox's q4_z (ggml-quants.ts), held in memory only: no GGUF file has it.
const TYPE_NAMES: Record<number, string> = {
  0: 'f32',
  1: 'f16',
  2: 'q4_0',
  3: 'q4_1',
  8: 'q8_0',
  30: 'bf16',
  256: 'q4_z',
};

/** Elements per block and bytes per block of each type. */
const BLOCK: Record<number, { n: number; bytes: number }> = {
  0: { n: 1, bytes: 4 },
  1: { n: 1, bytes: 2 },
  30: { n: 1, bytes: 2 },
  2: { n: 32, bytes: 18 },
  3: { n: 32, bytes: 20 },
  8: { n: 32, bytes: 34 },
};

export function ggmlTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `ggml type ${type}`;
}

/** Metadata values as GGUF types them; the writer needs the type, so values carry it. */
export type GgufValue =
  | { type: 'u32' | 'i32' | 'f32' | 'u64' | 'u8' | 'i8' | 'u16' | 'i16' | 'i64' | 'f64'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; of: 'string'; value: string[] }
  | { type: 'array'; of: 'f32' | 'i32' | 'u32'; value: number[] };

export interface GgufTensorInfo {
  name: string;
  /** ggml order: dims[0] is the fastest-varying (a row's length). */
  dims: number[];
  type: number;
  /** Bytes from the start of the data section. */
  offset: number;
  bytes: number;
}

export interface GgufFile {
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  /** One tensor's raw bytes: with `mmap` a copy-on-write view of the mapped file, else a copy. */
  read(t: GgufTensorInfo): Uint8Array;
  /** Reads `out.byteLength` bytes of a tensor from its byte `begin` into `out` (from the file, mapped or not). */
  readInto(t: GgufTensorInfo, begin: number, out: Uint8Array): void;
  close(): void;
}

const VALUE_TYPES = [
  'u8',
  'i8',
  'u16',
  'i16',
  'u32',
  'i32',
  'f32',
  'bool',
  'string',
  'array',
  'u64',
  'i64',
  'f64',
] as const;

export function tensorBytes(type: number, dims: number[], file = ''): number {
  const b = BLOCK[type];
  if (!b)
    throw new LlmboxError(`unsupported tensor type ${ggmlTypeName(type)}`, {
      file,
      fix: 'llmbox reads f32, f16, bf16, q8_0, q4_0 and q4_1 GGUF tensors',
    });
  const n = dims.reduce((a, d) => a * d, 1);
  if (dims[0] % b.n)
    throw new LlmboxError(`a ${ggmlTypeName(type)} row of ${dims[0]} is not a whole number of ${b.n}-element blocks`, {
      file,
    });
  return (n / b.n) * b.bytes;
}

/** A little-endian cursor over the header, reading more of the file as it goes. */
class HeaderReader {
  pos = 0;
  private buf = Buffer.alloc(0);
  private start = 0;
  constructor(
    private readonly fd: number,
    private readonly size: number,
    private readonly file: string,
  ) {}

  private need(n: number): void {
    if (this.pos + n <= this.start + this.buf.length) return;
    if (this.pos + n > this.size) throw new LlmboxError('truncated GGUF header', { file: this.file });
    const len = Math.max(n, 1 << 20);
    this.buf = Buffer.alloc(Math.min(len, this.size - this.pos));
    readSync(this.fd, this.buf, 0, this.buf.length, this.pos);
    this.start = this.pos;
  }
  /** Reads n bytes through f; the buffer may be refilled first, so f receives the current one. */
  private take<T>(n: number, f: (buf: Buffer, off: number) => T): T {
    this.need(n);
    const off = this.pos - this.start;
    this.pos += n;
    return f(this.buf, off);
  }
  u32 = () => this.take(4, (b, o) => b.readUInt32LE(o));
  u64 = () => {
    const v = this.take(8, (b, o) => b.readBigUInt64LE(o));
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new LlmboxError('a GGUF count is too large', { file: this.file });
    return Number(v);
  };
  string = () => {
    const n = this.u64();
    return this.take(n, (b, o) => b.toString('utf8', o, o + n));
  };
  scalar(t: (typeof VALUE_TYPES)[number]): number | boolean | string {
    switch (t) {
      case 'u8':
        return this.take(1, (b, o) => b.readUInt8(o));
      case 'i8':
        return this.take(1, (b, o) => b.readInt8(o));
      case 'u16':
        return this.take(2, (b, o) => b.readUInt16LE(o));
      case 'i16':
        return this.take(2, (b, o) => b.readInt16LE(o));
      case 'u32':
        return this.u32();
      case 'i32':
        return this.take(4, (b, o) => b.readInt32LE(o));
      case 'f32':
        return this.take(4, (b, o) => b.readFloatLE(o));
      case 'bool':
        return this.take(1, (b, o) => b.readUInt8(o) !== 0);
      case 'string':
        return this.string();
      case 'u64':
        return this.u64();
      case 'i64':
        return this.take(8, (b, o) => Number(b.readBigInt64LE(o)));
      case 'f64':
        return this.take(8, (b, o) => b.readDoubleLE(o));
      default:
        throw new LlmboxError(`nested GGUF arrays are not supported`, { file: this.file });
    }
  }
}

function valueType(code: number, file: string): (typeof VALUE_TYPES)[number] {
  const t = VALUE_TYPES[code];
  if (!t) throw new LlmboxError(`unknown GGUF metadata type ${code}`, { file });
  return t;
}

/**
 * Opens a GGUF file: the header is parsed, tensor data is read on demand; with `mmap`, the file is
 * mapped and each tensor's bytes are a view of the mapping (copy-on-write: changing them never
 * changes the file).
 */
export function openGguf(file: string, opts: { mmap?: boolean } = {}): GgufFile {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    const r = new HeaderReader(fd, size, file);
    if (r.u32() !== 0x46554747) throw new LlmboxError('not a GGUF file (no GGUF magic)', { file });
    const version = r.u32();
    if (version !== 2 && version !== 3)
      throw new LlmboxError(`GGUF version ${version}`, {
        file,
        fix: 'llmbox reads GGUF v2 and v3 (llama.cpp writes v3)',
      });
    const nTensors = r.u64();
    const nKv = r.u64();
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < nKv; i++) {
      const key = r.string();
      const t = valueType(r.u32(), file);
      if (t === 'array') {
        const of = valueType(r.u32(), file);
        const n = r.u64();
        const items = Array.from({ length: n }, () => r.scalar(of));
        metadata.set(key, { type: 'array', of, value: items } as GgufValue);
      } else metadata.set(key, { type: t, value: r.scalar(t) } as GgufValue);
    }
    const tensors: GgufTensorInfo[] = [];
    for (let i = 0; i < nTensors; i++) {
      const name = r.string();
      const nd = r.u32();
      const dims = Array.from({ length: nd }, () => r.u64());
      const type = r.u32();
      const offset = r.u64();
      tensors.push({ name, dims, type, offset, bytes: tensorBytes(type, dims, file) });
    }
    const align = Number(metadata.get('general.alignment')?.value ?? 32);
    const dataStart = Math.ceil(r.pos / align) * align;
    for (const t of tensors) {
      if (dataStart + t.offset + t.bytes > size)
        throw new LlmboxError(`tensor ${t.name} runs past the end of the file (truncated download?)`, { file });
    }
    const at = (t: GgufTensorInfo) => dataStart + t.offset;
    const mapped = opts.mmap
      ? mapRanges(
          file,
          tensors.map((t) => [at(t), at(t) + t.bytes]),
        )
      : [];
    const views = new Map(mapped.map((v, i) => [tensors[i], v]));
    const readInto = (t: GgufTensorInfo, begin: number, out: Uint8Array) => {
      // One read returns at most about 2 GiB on Linux: a large tensor takes several.
      for (let done = 0; done < out.byteLength;) {
        const n = readSync(fd, out, done, out.byteLength - done, at(t) + begin + done);
        if (n === 0) throw new LlmboxError(`tensor ${t.name} ends early (file truncated?)`, { file });
        done += n;
      }
    };
    return {
      version,
      metadata,
      tensors,
      read(t) {
        const view = views.get(t);
        if (view) return view;
        const out = allocWeightBytes(t.bytes);
        readInto(t, 0, out);
        return out;
      },
      readInto,
      close: () => closeSync(fd),
    };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/** A tensor to write: ggml-ordered dims, its type and its encoded bytes (or a function that encodes them when written, so a large model is never in memory at once). */
export interface GgufTensorOut {
  name: string;
  dims: number[];
  type: number;
  data: Uint8Array | (() => Uint8Array);
}

const ALIGN = 32;

function encodeValue(v: GgufValue): Buffer[] {
  const code = (t: string) =>
    Buffer.from(new Uint32Array([VALUE_TYPES.indexOf(t as (typeof VALUE_TYPES)[number])]).buffer);
  const str = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(b.length));
    return Buffer.concat([len, b]);
  };
  const scalar = (t: string, x: number | boolean | string): Buffer => {
    const b = Buffer.alloc(8);
    switch (t) {
      case 'u32':
        b.writeUInt32LE(x as number);
        return b.subarray(0, 4);
      case 'i32':
        b.writeInt32LE(x as number);
        return b.subarray(0, 4);
      case 'f32':
        b.writeFloatLE(x as number);
        return b.subarray(0, 4);
      case 'u64':
        b.writeBigUInt64LE(BigInt(x as number));
        return b;
      case 'bool':
        return Buffer.from([x ? 1 : 0]);
      case 'string':
        return str(x as string);
      default:
        throw new Error(`gguf writer: type ${t} not written by llmbox`);
    }
  };
  if (v.type === 'array') {
    const n = Buffer.alloc(8);
    n.writeBigUInt64LE(BigInt(v.value.length));
    return [code('array'), code(v.of), n, ...(v.value as (string | number)[]).map((x) => scalar(v.of, x))];
  }
  return [code(v.type), scalar(v.type, v.value)];
}

/** Writes a GGUF v3 file atomically: header, metadata, tensor infos, then each tensor 32-byte aligned. */
export function writeGguf(file: string, metadata: [string, GgufValue][], tensors: GgufTensorOut[]): void {
  const head: Buffer[] = [];
  const u32 = (x: number) => Buffer.from(new Uint32Array([x]).buffer);
  const u64 = (x: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(x));
    return b;
  };
  const str = (s: string) => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s, 'utf8')]);
  head.push(u32(0x46554747), u32(3), u64(tensors.length), u64(metadata.length + 1));
  for (const [key, v] of [...metadata, ['general.alignment', { type: 'u32', value: ALIGN }] as [string, GgufValue]]) {
    head.push(str(key), ...encodeValue(v));
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    offsets.push(offset);
    head.push(str(t.name), u32(t.dims.length), ...t.dims.map(u64), u32(t.type), u64(offset));
    offset += Math.ceil(tensorBytes(t.type, t.dims) / ALIGN) * ALIGN;
  }
  const header = Buffer.concat(head);
  const dataStart = Math.ceil(header.length / ALIGN) * ALIGN;
  writeFileAtomicWith(file, (fd) => {
    writeAllAt(fd, header, 0);
    writeAllAt(fd, Buffer.alloc(dataStart - header.length), header.length);
    tensors.forEach((t, i) => {
      const data = typeof t.data === 'function' ? t.data() : t.data;
      if (data.length !== tensorBytes(t.type, t.dims))
        throw new Error(`gguf writer: ${t.name} holds ${data.length} bytes, not ${tensorBytes(t.type, t.dims)}`);
      writeAllAt(fd, data, dataStart + offsets[i]);
      const pad = Math.ceil(data.length / ALIGN) * ALIGN - data.length;
      if (pad) writeAllAt(fd, Buffer.alloc(pad), dataStart + offsets[i] + data.length);
    });
  });
}

function writeAllAt(fd: number, bytes: Uint8Array, at: number): void {
  for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done, bytes.length - done, at + done);
}
