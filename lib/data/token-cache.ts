import { createHash } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fstatSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { cacheDir } from '../util/paths.js';
import type { Example } from './tokenize.js';

/** The cache key of a data file under a tokenizer and the settings that change its tokens. */
export function tokenCacheKey(file: string, tokenizer: string, settings: unknown): string {
  const st = statSync(file);
  return createHash('sha256')
    .update(JSON.stringify({ file: realpathSync(file), size: st.size, mtime: st.mtimeMs, tokenizer, settings, v: 1 }))
    .digest('hex')
    .slice(0, 24);
}

/** Where a key's tokens are kept. */
export function cacheFile(key: string, dir = cacheDir()): string {
  return join(dir, 'tokenized', `${key}.bin`);
}

// Layout: "LLMBOXTK" | u32 count | i32 lengths[count] | i32 ids[total] | u8 masks[total].
const MAGIC = 'LLMBOXTK';

/**
 * A data file's tokens from the cache when this file, tokenizer and settings were seen before (and
 * `reuse` is not false); else the examples are produced, streamed to the cache and opened from there.
 * A broken cache file is rebuilt.
 */
export async function openTokenCache(
  key: string,
  produce: () => AsyncIterable<Example | null>,
  opts: { reuse?: boolean; dir?: string } = {},
): Promise<{ store: TokenStore; hit: boolean }> {
  const file = cacheFile(key, opts.dir);
  if (opts.reuse !== false && existsSync(file)) {
    try {
      return { store: new TokenStore(file), hit: true };
    } catch {
      // rebuilt below
    }
  }
  return { store: new TokenStore(await writeTokenCache(key, produce(), opts)), hit: false };
}

/**
 * Writes a cache file from a stream of examples without holding their tokens: ids and masks go to
 * temporary files as they come, lengths (4 bytes an example) stay in memory, and the parts are joined
 * behind the header at the end, then renamed into place.
 */
export async function writeTokenCache(
  key: string,
  examples: AsyncIterable<Example | null>,
  opts: { dir?: string } = {},
): Promise<string> {
  const file = cacheFile(key, opts.dir);
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  const idsFd = openSync(`${tmp}.ids`, 'w'),
    masksFd = openSync(`${tmp}.masks`, 'w');
  const lengths: number[] = [];
  try {
    for await (const e of examples) {
      lengths.push(e ? e.inputIds.length : -1);
      if (!e) continue;
      writeSync(idsFd, new Uint8Array(Int32Array.from(e.inputIds).buffer));
      writeSync(masksFd, e.labelMask);
    }
  } finally {
    closeSync(idsFd);
    closeSync(masksFd);
  }
  const out = openSync(tmp, 'w');
  try {
    const head = new Uint8Array(12);
    head.set(new TextEncoder().encode(MAGIC), 0);
    new DataView(head.buffer).setUint32(8, lengths.length, true);
    writeSync(out, head);
    writeSync(out, new Uint8Array(Int32Array.from(lengths).buffer));
    for (const part of [`${tmp}.ids`, `${tmp}.masks`]) {
      const fd = openSync(part, 'r');
      const buf = new Uint8Array(1 << 22);
      for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0;) writeSync(out, buf, 0, n);
      closeSync(fd);
      rmSync(part);
    }
    fsyncSync(out);
  } finally {
    closeSync(out);
  }
  renameSync(tmp, file);
  return file;
}

/**
 * A cache file read in place: only the lengths are loaded; token ids are read from disk when a row
 * needs them, so corpora larger than memory can be trained on.
 */
export class TokenStore {
  readonly count: number;
  readonly lengths: Int32Array;
  /** Token offset of each example (float64: corpora may pass 2^31 tokens). */
  private readonly offsets: Float64Array;
  private readonly fd: number;
  private readonly idsAt: number;
  readonly totalTokens: number;

  /** Opens a cache file; throws when it is not one or is cut short (a half-written or foreign file). */
  constructor(readonly file: string) {
    this.fd = openSync(file, 'r');
    try {
      const size = fstatSync(this.fd).size;
      const head = Buffer.alloc(12);
      readSync(this.fd, head, 0, 12, 0);
      if (size < 12 || head.subarray(0, 8).toString('latin1') !== MAGIC)
        throw new Error(`${file} is not a tokenized cache file`);
      this.count = head.readUInt32LE(8);
      if (size < 12 + 4 * this.count) throw new Error(`${file} is cut short`);
      const lens = Buffer.alloc(4 * this.count);
      readSync(this.fd, lens, 0, lens.length, 12);
      this.lengths = new Int32Array(lens.buffer, lens.byteOffset, this.count).slice();
      this.offsets = new Float64Array(this.count + 1);
      for (let i = 0; i < this.count; i++) this.offsets[i + 1] = this.offsets[i] + Math.max(0, this.lengths[i]);
      this.totalTokens = this.offsets[this.count];
      this.idsAt = 12 + 4 * this.count;
      if (size !== this.idsAt + 5 * this.totalTokens) throw new Error(`${file} has the wrong size`);
    } catch (e) {
      closeSync(this.fd);
      throw e;
    }
  }

  /** Token ids [start, start + n) of example i. */
  ids(i: number, start = 0, n = Math.max(0, this.lengths[i]) - start): Int32Array {
    const buf = Buffer.alloc(4 * n);
    readSync(this.fd, buf, 0, buf.length, this.idsAt + 4 * (this.offsets[i] + start));
    return new Int32Array(buf.buffer, buf.byteOffset, n);
  }

  example(i: number): Example | null {
    if (this.lengths[i] < 0) return null;
    const n = this.lengths[i];
    const masks = Buffer.alloc(n);
    readSync(this.fd, masks, 0, n, this.idsAt + 4 * this.totalTokens + this.offsets[i]);
    return { inputIds: Array.from(this.ids(i)), labelMask: new Uint8Array(masks.buffer, masks.byteOffset, n).slice() };
  }

  close(): void {
    closeSync(this.fd);
  }
}
