import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/** The parts of node-llama-cpp the cross-checks use. */
export interface LlamaCppModel {
  tokenize(text: string): number[];
  detokenize(ids: number[]): string;
  tokens: { bos: number | null };
  createContext(o: { contextSize: number; threads?: number }): Promise<{
    getSequence(): { evaluate(ids: number[], o: { temperature: number }): AsyncIterable<number> };
    dispose(): Promise<void>;
  }>;
  dispose(): Promise<void>;
}

const TOOL = resolve(import.meta.dirname, '../../tools/llama-cpp/package.json');

/**
 * llama.cpp through node-llama-cpp's prebuilt CPU binaries, installed in tools/llama-cpp (.ci/run
 * does `npm ci --prefix tools/llama-cpp --omit=optional`); null where it is not installed.
 */
export async function llamaCpp(): Promise<{ loadModel(o: { modelPath: string }): Promise<LlamaCppModel> } | null> {
  let entry: string;
  try {
    entry = createRequire(TOOL).resolve('node-llama-cpp');
  } catch {
    return null;
  }
  if (!existsSync(entry)) return null;
  const mod = (await import(pathToFileURL(entry).href)) as {
    getLlama(o: object): Promise<{ loadModel(o: { modelPath: string }): Promise<LlamaCppModel> }>;
  };
  return mod.getLlama({ gpu: false, build: 'never', logLevel: 'error' });
}

/** llama.cpp's greedy continuation of a prompt (BOS first, as llmbox encodes it). */
export async function llamaCppGreedy(
  model: LlamaCppModel,
  prompt: string,
  n: number,
): Promise<{ prompt: number[]; ids: number[] }> {
  // One thread: llama.cpp's workers spin while they wait, which on a busy 2-core machine costs 40x.
  const ctx = await model.createContext({ contextSize: 256, threads: 1 });
  try {
    const ids = [...(model.tokens.bos !== null ? [model.tokens.bos] : []), ...model.tokenize(prompt)];
    const out: number[] = [];
    for await (const t of ctx.getSequence().evaluate(ids, { temperature: 0 })) {
      out.push(t);
      if (out.length >= n) break;
    }
    return { prompt: ids, ids: out };
  } finally {
    await ctx.dispose();
  }
}
