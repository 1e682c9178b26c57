import * as tf from '@tensorflow/tfjs';
import { createHash } from 'node:crypto';
import {
  appendFileSync,
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { processAlive } from '../util/process.js';
import { join } from 'node:path';
import type { LlamaModel } from '../models/llama.js';
import { writeFileAtomic } from '../util/fs.js';

export const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/**
 * A fingerprint of a model's weights: config, every tensor's name and shape, and a strided sample of
 * up to 4096 values per tensor (gathered where the tensor lives, so a GPU reads back only the sample).
 * Hashing every byte of a 7B model would take longer than many evaluations; the sample still changes
 * with any training step or different checkpoint.
 */
export function modelHash(model: LlamaModel): string {
  return hashSamples(
    model,
    weightSamples(model).map((t) => {
      const v = t.dataSync() as Float32Array;
      t.dispose();
      return v;
    }),
  );
}

/** modelHash, reading the samples asynchronously (the webgpu backend cannot read synchronously). */
export async function modelHashAsync(model: LlamaModel): Promise<string> {
  const samples: Float32Array[] = [];
  for (const t of weightSamples(model)) {
    samples.push((await t.data()) as Float32Array);
    t.dispose();
  }
  return hashSamples(model, samples);
}

const hashedTensors = (model: LlamaModel) =>
  [...model.params.entries(), ...model.adapters.entries()].sort(([a], [b]) => a.localeCompare(b));

/** Every 1/4096th value of each tensor (in hashedTensors order), as tensors to read. */
function weightSamples(model: LlamaModel): tf.Tensor[] {
  return hashedTensors(model).map(([, t]) =>
    tf.tidy(() => {
      const stride = Math.max(1, Math.floor(t.size / 4096));
      const idx = Array.from({ length: Math.ceil(t.size / stride) }, (_, j) => j * stride);
      return tf.gather(t.reshape([-1]), tf.tensor1d(idx, 'int32'));
    }),
  );
}

function hashSamples(model: LlamaModel, samples: Float32Array[]): string {
  const h = createHash('sha256');
  h.update(JSON.stringify(model.config));
  // Unmerged LoRA adapters change the outputs, so they are part of the identity.
  if (model.lora) h.update(JSON.stringify(model.lora));
  for (const [name, q] of [...model.quantized.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    h.update(`${name}:nf4;`);
    h.update(q.codes);
    h.update(new Uint8Array(q.absmaxCodes.buffer));
  }
  // Packed matrices (q8_0, q4_0, ... outside the heap): their type and a strided sample of their bytes, so
  // the same model at two precisions never shares results or resume state.
  for (const [name, p] of [...model.packed.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    h.update(`${name}:ggml${p.type}:${p.n}x${p.k};`);
    const stride = Math.max(1, Math.floor(p.weights.length / 65536));
    h.update(Uint8Array.from({ length: Math.ceil(p.weights.length / stride) }, (_, j) => p.weights[j * stride]));
    if (p.inputOrder) h.update(new Uint8Array(p.inputOrder.buffer, p.inputOrder.byteOffset, p.inputOrder.byteLength));
  }
  hashedTensors(model).forEach(([name, t], i) => {
    h.update(`${name}:${t.shape.join('x')};`);
    h.update(new Uint8Array(samples[i].buffer, samples[i].byteOffset, samples[i].byteLength));
  });
  return h.digest('hex').slice(0, 16);
}

/** Per-instance record of one task, as written to samples_<task>_<time>.jsonl (lm-eval's layout plus llmbox fields). */
export interface SampleRecord {
  doc_id: number;
  doc: { id: string; query: string; choices?: string[]; references?: string[] };
  target: string;
  /** lm-eval's request arguments: gen_args_i -> {arg_0: context, arg_1: continuation or generation settings}. */
  arguments: Record<string, { arg_0: string; arg_1: unknown }>;
  /** lm-eval's responses: [[log-likelihood, is-greedy]] per option, or [text] per sample. */
  resps: unknown[][];
  filtered_resps: unknown[];
  doc_hash: string;
  prompt_hash: string;
  target_hash: string;
  metrics: Record<string, number>;
}

/**
 * Resume state of one task run: finished instances appended as JSON lines (fsync'd per chunk), so
 * an interrupted run, even by kill -9, keeps every chunk it completed. A torn last line is ignored.
 */
export class PartialResults {
  readonly file: string;

  constructor(dir: string, key: string) {
    mkdirSync(dir, { recursive: true });
    this.file = join(dir, `${key}.partial.jsonl`);
  }

  load(): Map<number, SampleRecord> {
    const done = new Map<number, SampleRecord>();
    if (!existsSync(this.file)) return done;
    for (const line of readFileSync(this.file, 'utf8').split('\n')) {
      if (!line.trim()) continue;
      try {
        const r = JSON.parse(line) as SampleRecord;
        done.set(r.doc_id, r);
      } catch {
        // The line a crash cut short: that chunk is recomputed.
      }
    }
    return done;
  }

  /**
   * Holds this task's resume state for this process until the returned release is called. A second
   * run into the same --output waits for the first, then reuses what it finished, instead of
   * recomputing it and appending duplicate records; a lock left by a dead process is taken over.
   */
  async lock(onWait?: (holder: number) => void): Promise<() => void> {
    const lockFile = `${this.file}.lock`;
    for (let waited = false; ;) {
      try {
        writeFileSync(lockFile, String(process.pid), { flag: 'wx' });
        return () => {
          if (readFileSync(lockFile, 'utf8') === String(process.pid)) rmSync(lockFile, { force: true });
        };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const holder = Number(readFileSync(lockFile, 'utf8'));
      if (!processAlive(holder)) {
        rmSync(lockFile, { force: true });
        continue;
      }
      if (!waited) onWait?.(holder);
      waited = true;
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Forgets finished instances (a run started over with --no-resume). */
  reset(): void {
    rmSync(this.file, { force: true });
  }

  append(records: SampleRecord[]): void {
    if (!records.length) return;
    appendFileSync(this.file, records.map((r) => JSON.stringify(r) + '\n').join(''));
    const fd = openSync(this.file, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

/** File-name time stamp as lm-eval writes it (2024-05-01T12-30-00.123456). */
export function fileTimestamp(d = new Date()): string {
  return d
    .toISOString()
    .replace(/:/g, '-')
    .replace('Z', '')
    .replace(/\.(\d{3})$/, '.$1000');
}

export function writeSamples(dir: string, task: string, stamp: string, records: SampleRecord[]): string {
  const file = join(dir, `samples_${task}_${stamp}.jsonl`);
  writeFileAtomic(file, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return file;
}

export function writeResults(dir: string, stamp: string, results: unknown): string {
  const file = join(dir, `results_${stamp}.json`);
  writeFileAtomic(file, JSON.stringify(results, null, 2) + '\n');
  return file;
}
