import * as tf from '@tensorflow/tfjs';
import { copyFileSync, existsSync, readFileSync, statSync } from 'node:fs';
import { modelsDirs, resolveModelDir } from '../util/paths.js';
import { isHubSpec } from '../hub/repo.js';
import { resolveHubModel } from '../hub/pull.js';
import { isGgufPath, readGgufModel } from './gguf.js';
import { packLinears, packWhileReading, type PackType } from './packed.js';
import { basename, join } from 'node:path';
import { LlmboxError } from '../errors.js';
import { initEngine, nativeAddon, type EngineOptions } from '../engine/index.js';
import { readableOnHost } from '../engine/webgpu.js';
import { writeFileAtomic } from '../util/fs.js';
import { parseConfig, readConfig, toHfConfig, type ModelConfig } from './config.js';
import { LlamaModel, parameterShapes } from './llama.js';
import { fromCheckpoint } from './layout.js';
import { packGptq, readQuantization } from './gptq.js';
import type { PackedMatrix } from '../engine/ops.js';
import { readModelWeights, writeSafetensors } from './safetensors.js';
import { TextTokenizer } from './tokenizer.js';

/** How the linear weights are held: a ggml type packed outside the tensor heap, or NF4 (QLoRA's 4-bit NormalFloat, dequantized where a layer runs). */
export type WeightType = PackType | 'nf4';

/** Engine options, and how the weights are held (`--load-in-8bit` q8_0, `--load-in-4bit` q4_0 unless `--quant` says q4_1 or nf4). */
export type LoadModelOptions = EngineOptions & {
  quantize?: WeightType;
  /**
   * Map the weight files and use the matrices where they lie (the default, with the add-on); false
   * reads them into memory of the process's own, as --no-mmap does: for a file that may be rewritten
   * in place while the model is loaded, which would change (or, cut short, crash) a mapped model.
   */
  mmap?: boolean;
};

export interface GenerationConfig {
  bosTokenId?: number;
  eosTokenIds: number[];
  padTokenId?: number;
}

export interface LoadedModel {
  dir: string;
  /** What results call the model when it is not the folder's name (a base with an adapter). */
  name?: string;
  model: LlamaModel;
  tokenizer: TextTokenizer | null;
  generation: GenerationConfig;
}

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];

function readGenerationConfig(dir: string, cfg: ModelConfig): GenerationConfig {
  const file = `${dir}/generation_config.json`;
  let raw: Record<string, unknown> = {};
  if (existsSync(file)) {
    try {
      raw = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new LlmboxError(`not valid JSON: ${(e as Error).message}`, { file });
    }
  }
  const eos = raw.eos_token_id;
  return {
    bosTokenId: typeof raw.bos_token_id === 'number' ? raw.bos_token_id : (cfg.bosTokenId ?? undefined),
    eosTokenIds:
      typeof eos === 'number' ? [eos] : Array.isArray(eos) ? eos.filter((x) => typeof x === 'number') : cfg.eosTokenIds,
    padTokenId: typeof raw.pad_token_id === 'number' ? raw.pad_token_id : undefined,
  };
}

/** A model argument as a folder: a path, a shipped model's name, or `hf:org/name[@revision]` (pulled into the hub cache first). */
async function modelFolder(model: string): Promise<string> {
  return isHubSpec(model) ? resolveHubModel(model) : resolveModelDir(model);
}

/** Loads a model folder in Hugging Face layout, a GGUF file, or `hf:org/name` (fetched from the hub into its cache). */
export async function loadModel(modelDir: string, engine: LoadModelOptions = {}): Promise<LoadedModel> {
  if (engine.quantize !== 'nf4') return loadHeld(modelDir, { ...engine, quantize: engine.quantize });
  const loaded = await loadHeld(modelDir, { ...engine, quantize: undefined, keepStored: false });
  if (loaded.model.packed.size) {
    loaded.model.dispose();
    throw new LlmboxError('NF4 is made from float weights; this model is stored in a quantized ggml type', {
      file: loaded.dir,
      field: '--quant',
      fix: 'load the float model with --quant nf4, or this one without --load-in-4bit',
    });
  }
  await readableOnHost(loaded.model.params.values());
  loaded.model.holdLinearsAsNF4();
  return loaded;
}

/** `keepStored: false` reads f16/bf16 matrices as float32 parameters even where the add-on could use them as stored. */
type PackedOptions = Omit<LoadModelOptions, 'quantize'> & { quantize?: PackType; keepStored?: boolean };

/** loadModel with the linear weights float or packed in a ggml type. */
async function loadHeld(modelDir: string, engine: PackedOptions): Promise<LoadedModel> {
  if (isGgufPath(modelDir)) return loadGguf(modelDir, engine);
  const dir = await modelFolder(modelDir);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new LlmboxError('model folder not found', {
      file: dir,
      fix: `pass a local folder in Hugging Face layout (config.json, model.safetensors, tokenizer.json), hf:org/name from the hub, or the name of a model in ${modelsDirs().join(' or ')}`,
    });
  }
  // A folder written by `llmbox quantize`: its weights are one GGUF file beside the tokenizer.
  const gguf = join(dir, 'model.gguf');
  if (
    !existsSync(join(dir, 'model.safetensors')) &&
    !existsSync(join(dir, 'model.safetensors.index.json')) &&
    existsSync(gguf)
  ) {
    return { ...(await loadGguf(gguf, engine)), name: basename(dir) };
  }
  await initEngine(engine);
  const config = readConfig(dir);
  const gptq = readQuantization(dir, config);
  const base = gptq?.baseName ?? 'model';
  const weightsFile = existsSync(`${dir}/${base}.safetensors`)
    ? `${dir}/${base}.safetensors`
    : `${dir}/${base}.safetensors.index.json`;
  const shapes = parameterShapes(config);
  // Matrices are packed (--load-in-8bit/4bit) or kept as stored (f16/bf16, where the add-on multiplies them) as they are read.
  const packed = new Map<string, PackedMatrix>();
  const keepStored = engine.keepStored !== false && nativeAddon() !== null;
  const take = packWhileReading(config, packed, { shapes, quantize: engine.quantize, keepStored, file: weightsFile });
  const stored = readModelWeights(dir, base, take, { mmap: engine.mmap !== false });
  // GPTQ's matrices are packed as stored.
  if (gptq) for (const [name, pk] of packGptq(stored, gptq, weightsFile)) packed.set(name, pk);
  for (const name of packed.keys())
    if (!shapes.has(name))
      throw new LlmboxError(`unexpected GPTQ tensor ${name.replace(/weight$/, 'qweight')}`, {
        file: weightsFile,
        field: name.replace(/weight$/, 'qweight'),
        fix: `a ${config.architecture} model with this config.json has no such linear: check num_hidden_layers and that the weights belong to it`,
      });
  // In the model's names before packing: a checkpoint's own (GPT-2's c_attn, Phi-3's qkv_proj) are not the model's linears.
  const raw = fromCheckpoint(config, stored);
  if (engine.quantize) for (const [name, pk] of packLinears(config, raw, engine.quantize)) packed.set(name, pk);
  const model = LlamaModel.fromRaw(config, raw, weightsFile, packed);
  const tokenizer = existsSync(`${dir}/tokenizer.json`) ? TextTokenizer.fromDir(dir) : null;
  if (tokenizer && tokenizer.vocabSize > config.vocabSize) {
    model.dispose();
    throw new LlmboxError(
      `tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${config.vocabSize}`,
      {
        file: `${dir}/tokenizer.json`,
        fix: 'use the tokenizer that belongs to these weights',
      },
    );
  }
  // A hub snapshot's folder is named by its commit: results name the repository instead.
  const name = isHubSpec(modelDir) ? modelDir.slice('hf:'.length) : undefined;
  return { dir, ...(name ? { name } : {}), model, tokenizer, generation: readGenerationConfig(dir, config) };
}

/** A GGUF file (llama.cpp's format): weights decoded to float32, the tokenizer from its metadata or tokenizer.json beside it. */
async function loadGguf(file: string, engine: PackedOptions): Promise<LoadedModel> {
  if (!existsSync(file) || !statSync(file).isFile())
    throw new LlmboxError('GGUF file not found', { file, fix: 'pass the path of a .gguf file' });
  await initEngine(engine);
  // Matrices stay in the file's type, outside the tensor heap (a float32 copy of a quantized model is never made).
  const g = readGgufModel(file, { keepPacked: true, mmap: engine.mmap !== false });
  const config = parseConfig(g.config, file);
  const packed = engine.quantize ? packLinears(config, g.raw, engine.quantize) : new Map();
  for (const [k, v] of g.packed) packed.set(k, v);
  const model = LlamaModel.fromRaw(config, g.raw, file, packed);
  const tokenizer = g.tokenizer ? new TextTokenizer(g.tokenizer.json, g.tokenizer.config) : null;
  return {
    dir: file,
    name: basename(file),
    model,
    tokenizer,
    generation: { bosTokenId: config.bosTokenId ?? undefined, eosTokenIds: config.eosTokenIds },
  };
}

/** Writes config.json, generation_config.json and model.safetensors (each atomically), and tokenizer files. */
export function saveModel(
  dir: string,
  model: LlamaModel,
  opts: { tokenizerFrom?: string; generation?: GenerationConfig } = {},
): void {
  writeSafetensors(`${dir}/model.safetensors`, model.toRaw());
  writeFileAtomic(`${dir}/config.json`, JSON.stringify(toHfConfig(model.config), null, 2) + '\n');
  const gen = opts.generation;
  const genJson: Record<string, unknown> = {
    bos_token_id: gen?.bosTokenId ?? model.config.bosTokenId,
    eos_token_id: gen
      ? gen.eosTokenIds.length === 1
        ? gen.eosTokenIds[0]
        : gen.eosTokenIds
      : model.config.eosTokenIds[0],
  };
  if (gen?.padTokenId !== undefined) genJson.pad_token_id = gen.padTokenId;
  writeFileAtomic(`${dir}/generation_config.json`, JSON.stringify(genJson, null, 2) + '\n');
  if (opts.tokenizerFrom) {
    for (const f of TOKENIZER_FILES) {
      if (existsSync(`${opts.tokenizerFrom}/${f}`)) copyFileSync(`${opts.tokenizerFrom}/${f}`, `${dir}/${f}`);
    }
  }
}

/** A randomly initialised model, seeded: normal(0, std) matrices and biases (non-zero, so tests exercise them), unit norms. */
export function randomModel(
  configJson: Record<string, unknown>,
  opts: { seed?: number; std?: number } = {},
): LlamaModel {
  const config = parseConfig(configJson, '<random config>');
  const std = opts.std ?? 0.02;
  let seed = opts.seed ?? 0;
  const raw = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, shape] of parameterShapes(config)) {
    const size = shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (name.endsWith('norm.weight')) data = new Float32Array(size).fill(1);
    else {
      const t = tf.randomNormal([size], 0, std, 'float32', seed++);
      data = t.dataSync() as Float32Array;
      t.dispose();
    }
    raw.set(name, { shape, data });
  }
  return LlamaModel.fromRaw(config, raw, '<random init>');
}

/**
 * A model folder's architecture and tokenizer with fresh random weights: the untrained baseline a
 * trained model is compared against.
 */
export async function untrainedModel(
  modelDir: string,
  opts: { seed?: number; std?: number; engine?: EngineOptions } = {},
): Promise<LoadedModel> {
  const dir = await modelFolder(modelDir);
  await initEngine(opts.engine ?? {});
  const configJson = JSON.parse(readFileSync(`${dir}/config.json`, 'utf8')) as Record<string, unknown>;
  const model = randomModel(configJson, opts);
  const tokenizer = existsSync(`${dir}/tokenizer.json`) ? TextTokenizer.fromDir(dir) : null;
  return {
    dir: `${dir} (untrained, seed ${opts.seed ?? 0})`,
    model,
    tokenizer,
    generation: readGenerationConfig(dir, model.config),
  };
}
