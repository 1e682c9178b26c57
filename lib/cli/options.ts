import { InvalidArgumentError, type Command } from 'commander';
import { readFileSync } from 'node:fs';
import { LlmboxError } from '../errors.js';
import type { BackendName } from '../engine/index.js';
import type { LoadModelOptions, WeightType } from '../models/load.js';
import type { ChatTemplate } from '../eval/chat.js';

export function int(name: string, min = 0) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return n;
  };
}

export function float(name: string, min: number, max = Infinity, opts: { minExclusive?: boolean } = {}) {
  return (v: string) => {
    const n = v.trim() === '' ? NaN : Number(v);
    if (!Number.isFinite(n) || n < min || n > max || (opts.minExclusive && n === min)) {
      throw new InvalidArgumentError(`${name} must be a number in ${opts.minExclusive ? '(' : '['}${min}, ${max}]`);
    }
    return n;
  };
}

/** A comma-separated list of positive integers (`--pass-k 1,2,5`). */
export function positiveList(flag: string) {
  return (v: string): number[] => {
    const parts = v.split(',').map((s) => s.trim());
    const xs = parts.map(Number);
    if (parts.some((p) => p === '') || xs.some((x) => !Number.isInteger(x) || x < 1))
      throw new InvalidArgumentError(`${flag} must be comma-separated positive integers, e.g. 1,2,5`);
    return xs;
  };
}

export function idList(v: string): number[] {
  const parts = v.split(',').map((s) => s.trim());
  const ids = parts.map(Number);
  // Number('') is 0: an empty entry ("1,,2", "") is an error, not token 0.
  if (parts.some((p) => p === '') || ids.some((x) => !Number.isInteger(x) || x < 0)) {
    throw new InvalidArgumentError('--ids must be comma-separated non-negative integers, e.g. 1,403,407');
  }
  return ids;
}

export interface GlobalOpts {
  backend?: BackendName;
  threads?: number;
  loadIn8bit?: boolean;
  loadIn4bit?: boolean;
  quant?: WeightType;
  /** false with --no-mmap. */
  mmap?: boolean;
}

/** Engine options and how the weights are held (--load-in-8bit: q8_0; --load-in-4bit: --quant, q4_0 unless said). */
export function engineOpts(cmd: Command): LoadModelOptions {
  const g = cmd.optsWithGlobals<GlobalOpts>();
  if (g.loadIn8bit && g.loadIn4bit)
    throw new LlmboxError('give one of --load-in-8bit and --load-in-4bit', { field: '--load-in-8bit/--load-in-4bit' });
  if (g.quant && !g.loadIn4bit)
    throw new LlmboxError('--quant says which 4-bit type --load-in-4bit uses', {
      field: '--quant',
      fix: 'add --load-in-4bit',
    });
  const quantize: WeightType | undefined = g.loadIn8bit ? 'q8_0' : g.loadIn4bit ? (g.quant ?? 'q4_0') : undefined;
  return {
    backend: g.backend,
    threads: g.threads,
    ...(quantize ? { quantize } : {}),
    ...(g.mmap === false ? { mmap: false } : {}),
  };
}

/** A named chat template, or the Jinja template in a file. */
export function chatTemplateOption(v: string | undefined): ChatTemplate | undefined {
  if (v === undefined) return undefined;
  return v === 'chatml' || v === 'alpaca' || v === 'plain' ? v : { jinja: readTextFile(v, '--chat-template') };
}

export function readTextFile(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new LlmboxError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, {
      file,
      field: flag,
    });
  }
}

export function print(json: boolean, obj: unknown, text: string) {
  process.stdout.write(json ? JSON.stringify(obj) + '\n' : text + '\n');
}

export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/** `i/n` with 0 <= i < n. */
export function shardSpec(v: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(v);
  const index = Number(m?.[1]),
    count = Number(m?.[2]);
  if (!m || count < 1 || index >= count) throw new InvalidArgumentError('--shard takes i/n with 0 <= i < n, e.g. 0/4');
  return { index, count };
}
