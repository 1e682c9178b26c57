import { existsSync } from 'node:fs';
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

/** The shipped models (../shared/models beside the checkout, or LLMBOX_MODELS_DIR). */
export function modelsDir(): string {
  return process.env.LLMBOX_MODELS_DIR ?? resolve(projectRoot(), '../shared/models');
}

/** A model argument as a folder: a path as given, else the name of a shipped model (`stories260K`). */
export function resolveModelDir(model: string): string {
  if (existsSync(model)) return model;
  const shipped = join(modelsDir(), model);
  return /^[\w.-]+$/.test(model) && existsSync(join(shipped, 'config.json')) ? shipped : model;
}
