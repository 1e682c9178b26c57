/**
 * A model with a LoRA adapter, wherever a model is used: `-m BASE --adapter DIR`, or `-m DIR` for a
 * PEFT folder whose adapter_config.json names its base (base_model_name_or_path).
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, isAbsolute, join, resolve } from 'node:path';
import type { LoadModelOptions } from '../models/load.js';
import { LlmboxError } from '../errors.js';
import { loadModel, type LoadedModel } from '../models/load.js';
import { isHubSpec } from '../hub/repo.js';
import { resolveHubModel } from '../hub/pull.js';
import { resolveModelDir } from '../util/paths.js';
import { loadAdapter, mergeLora } from './lora.js';

function adapterBase(dir: string): string {
  const file = join(dir, 'adapter_config.json');
  let base: unknown;
  try {
    base = (JSON.parse(readFileSync(file, 'utf8')) as { base_model_name_or_path?: unknown }).base_model_name_or_path;
  } catch (e) {
    throw new LlmboxError(`not valid JSON: ${(e as Error).message}`, { file });
  }
  if (typeof base !== 'string' || !base)
    throw new LlmboxError('the adapter names no base model', {
      file,
      field: 'base_model_name_or_path',
      fix: 'pass the base with -m BASE --adapter DIR',
    });
  // As written (absolute, or relative to where the adapter was trained), else beside the adapter,
  // else a shipped name, else (org/name, as PEFT writes a hub base) the hub.
  if (isAbsolute(base) || existsSync(base)) return base;
  const beside = resolve(dir, base);
  if (existsSync(beside)) return beside;
  const named = resolveModelDir(base);
  return !existsSync(named) && /^[\w.-]+\/[\w.-]+$/.test(base) ? `hf:${base}` : named;
}

/**
 * Loads the base and folds the adapter into its weights (inference only: merged, the forward pass
 * costs what the base's does). Its name names both.
 */
export async function loadModelOrAdapter(
  model: string,
  adapter: string | undefined,
  engine: LoadModelOptions = {},
): Promise<LoadedModel> {
  const dir = isHubSpec(model) ? await resolveHubModel(model) : resolveModelDir(model);
  if (adapter === undefined && !existsSync(join(dir, 'adapter_config.json'))) return loadModel(dir, engine);
  const adapterDir = adapter ?? dir;
  if (!existsSync(join(adapterDir, 'adapter_config.json')))
    throw new LlmboxError('not a PEFT adapter folder: adapter_config.json is missing', {
      file: adapterDir,
      field: '--adapter',
    });
  const loaded = await loadModel(adapter === undefined ? adapterBase(dir) : dir, engine);
  loadAdapter(adapterDir, loaded.model);
  mergeLora(loaded.model);
  return { ...loaded, name: `${loaded.name ?? basename(loaded.dir)}+${basename(resolve(adapterDir))}` };
}
