import { createHash } from 'node:crypto';
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/fs.js';
import type { Example } from './tokenize.js';

/** LLMBOX_CACHE_DIR, else ~/.cache/llmbox: where tokenized datasets are kept between runs. */
export function cacheDir(): string {
  return process.env.LLMBOX_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'llmbox');
}

/** The cache key of a data file under a tokenizer and the settings that change its tokens. */
export function tokenCacheKey(file: string, tokenizer: string, settings: unknown): string {
  const st = statSync(file);
  return createHash('sha256').update(JSON.stringify({ file: realpathSync(file), size: st.size, mtime: st.mtimeMs, tokenizer, settings, v: 1 })).digest('hex').slice(0, 24);
}

// Layout: "LLMBOXTK" | u32 count | i32 lengths[count] | i32 ids[total] | u8 masks[total].
const MAGIC = 'LLMBOXTK';

function encode(examples: (Example | null)[]): Uint8Array {
  const lengths = Int32Array.from(examples, (e) => (e ? e.inputIds.length : -1));
  const total = examples.reduce((n, e) => n + (e ? e.inputIds.length : 0), 0);
  const ids = new Int32Array(total), masks = new Uint8Array(total);
  let at = 0;
  for (const e of examples) {
    if (!e) continue;
    ids.set(e.inputIds, at);
    masks.set(e.labelMask, at);
    at += e.inputIds.length;
  }
  const out = new Uint8Array(8 + 4 + lengths.byteLength + ids.byteLength + masks.byteLength);
  out.set(new TextEncoder().encode(MAGIC), 0);
  new DataView(out.buffer).setUint32(8, examples.length, true);
  out.set(new Uint8Array(lengths.buffer), 12);
  out.set(new Uint8Array(ids.buffer), 12 + lengths.byteLength);
  out.set(masks, 12 + lengths.byteLength + ids.byteLength);
  return out;
}

function decode(buf: Buffer): (Example | null)[] | null {
  if (buf.length < 12 || buf.subarray(0, 8).toString('latin1') !== MAGIC) return null;
  const n = buf.readUInt32LE(8);
  const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength).slice();
  const lengths = new Int32Array(bytes.buffer, 12, n);
  const total = lengths.reduce((a, l) => a + Math.max(0, l), 0);
  if (bytes.byteLength !== 12 + 4 * n + 5 * total) return null;
  const ids = new Int32Array(bytes.buffer, 12 + 4 * n, total), masks = new Uint8Array(bytes.buffer, 12 + 4 * n + 4 * total, total);
  const out: (Example | null)[] = [];
  let at = 0;
  for (const l of lengths) {
    if (l < 0) {
      out.push(null);
      continue;
    }
    out.push({ inputIds: Array.from(ids.subarray(at, at + l)), labelMask: masks.slice(at, at + l) });
    at += l;
  }
  return out;
}

/**
 * Tokenized examples of one data file (null where a record is not tokenized, e.g. a preference
 * pair), from the cache when this file, tokenizer and settings were seen before; else produced and
 * written (atomically). A corrupt cache file is ignored and rewritten.
 */
export function cachedExamples(key: string, produce: () => (Example | null)[], opts: { dir?: string; enabled?: boolean } = {}): { examples: (Example | null)[]; hit: boolean } {
  if (opts.enabled === false) return { examples: produce(), hit: false };
  const file = join(opts.dir ?? cacheDir(), 'tokenized', `${key}.bin`);
  if (existsSync(file)) {
    const got = decode(readFileSync(file));
    if (got) return { examples: got, hit: true };
  }
  const examples = produce();
  writeFileAtomic(file, encode(examples));
  return { examples, hit: false };
}
