import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The llmbox checkout: found from this file, whether run from sources (lib/) or compiled (dist/lib/). */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = resolve(dir, '..');
  }
  return process.cwd();
}

/** Where model names are looked up: LLMBOX_MODELS_DIR, the models shipped in the repository, ../shared/models beside the checkout. */
export function modelsDirs(): string[] {
  return [
    process.env.LLMBOX_MODELS_DIR,
    join(projectRoot(), 'models'),
    resolve(projectRoot(), '../shared/models'),
  ].filter((d): d is string => !!d);
}

/** The first of modelsDirs() (for messages). */
export function modelsDir(): string {
  return modelsDirs()[0];
}

/** A model argument as a folder: a path as given, else the name of a shipped model (`stories260K`). */
export function resolveModelDir(model: string): string {
  if (existsSync(model) || !/^[\w.-]+$/.test(model)) return model;
  const shipped = modelsDirs()
    .map((d) => join(d, model))
    .find((d) => existsSync(join(d, 'config.json')));
  return shipped ?? model;
}

/**
 * Where tasks read their data: LLMBOX_DATA_DIR, else ../shared/data beside the checkout, else the
 * demo slices shipped in the repository (data/demo: the demo's tasks, a few hundred rows each).
 */
export function defaultDataDir(): string {
  if (process.env.LLMBOX_DATA_DIR) return process.env.LLMBOX_DATA_DIR;
  const shared = resolve(projectRoot(), '../shared/data');
  return existsSync(shared) ? shared : join(projectRoot(), 'data', 'demo');
}

/** LLMBOX_CACHE_DIR, else ~/.cache/llmbox: tokenized datasets, selections, judgements and probes kept between runs. */
export function cacheDir(): string {
  return process.env.LLMBOX_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'llmbox');
}
