import * as tf from '@tensorflow/tfjs';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LlmboxError } from '../errors.js';
import { transposedData } from '../engine/ops.js';
import { LINEARS, type LlamaModel, type LoraSettings } from '../models/llama.js';
import { readSafetensors, writeSafetensors, type RawTensor } from '../models/safetensors.js';
import { writeFileAtomic } from '../util/fs.js';
import { dequantizedTensor } from '../models/nf4.js';
import { packedAsParameter } from '../models/packed.js';
import { DEFAULTS } from '../util/defaults.js';

export interface LoraOptions {
  rank: number;
  /** Scale numerator: the adapter's output is multiplied by alpha / rank (default 2 x rank). */
  alpha?: number;
  dropout?: number;
  /** Module names (PEFT's target_modules): q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, or "all-linear". */
  targets?: string[];
  seed?: number;
}

const SHORT = LINEARS.map((l) => l.split('.').pop()!);

/** The LINEARS a model's layers have: GPT-NeoX and GPT-2 have no gate_proj, so all-linear means these. */
function presentLinears(model: LlamaModel): string[] {
  return LINEARS.filter((full) => model.hasParameter(`model.layers.0.${full}.weight`));
}

/** The linear layers (e.g. `model.layers.3.self_attn.q_proj`) that the targets name. */
export function loraLayers(model: LlamaModel, targets: string[]): string[] {
  const wanted = targets.includes('all-linear') ? SHORT : targets;
  const unknown = wanted.filter((t) => !SHORT.includes(t));
  if (unknown.length)
    throw new LlmboxError(`unknown LoRA target ${unknown.join(', ')}`, {
      field: '--lora-targets',
      fix: `use ${SHORT.join(', ')} or all-linear`,
    });
  const present = presentLinears(model);
  const absent = wanted.filter((t) => !present.some((full) => full.endsWith(`.${t}`)));
  if (absent.length && !targets.includes('all-linear'))
    throw new LlmboxError(`this ${model.config.architecture} model has no ${absent.join(', ')} layers`, {
      field: '--lora-targets',
      fix: `use ${present.map((f) => f.split('.').pop()).join(', ')} or all-linear`,
    });
  const out: string[] = [];
  for (let l = 0; l < model.config.numLayers; l++) {
    for (const full of present) if (wanted.includes(full.split('.').pop()!)) out.push(`model.layers.${l}.${full}`);
  }
  return out;
}

/**
 * Adds LoRA adapters (Hu et al. 2021) as PEFT initialises them: A uniform in +-1/sqrt(in) (kaiming
 * uniform with a = sqrt(5)), B zero, so the model is unchanged until B learns. Returns the adapter names.
 */
export function addLora(model: LlamaModel, o: LoraOptions): string[] {
  if (!(Number.isInteger(o.rank) && o.rank > 0))
    throw new LlmboxError(`LoRA rank must be a positive integer, got ${o.rank}`, { field: '--lora-rank' });
  if (model.lora)
    throw new LlmboxError('the model already has LoRA adapters', {
      fix: 'merge them (mergeLora) or load the base model again',
    });
  const settings: LoraSettings = {
    rank: o.rank,
    alpha: o.alpha ?? 2 * o.rank,
    dropout: o.dropout ?? DEFAULTS.lora.dropout,
    targets: o.targets ?? [...DEFAULTS.lora.targets],
  };
  let seed = o.seed ?? 0;
  for (const layer of loraLayers(model, settings.targets)) {
    const pk = model.packed.get(`${layer}.weight`);
    const [inDim, outDim] = pk
      ? [pk.k, pk.n]
      : (model.params.get(`${layer}.weight`) ?? model.quantized.get(`${layer}.weight`))!.shape;
    const bound = 1 / Math.sqrt(inDim);
    model.adapters.set(`${layer}.lora_A`, tf.randomUniform([inDim, o.rank], -bound, bound, 'float32', seed++));
    model.adapters.set(`${layer}.lora_B`, tf.zeros([o.rank, outDim]));
  }
  model.lora = settings;
  return [...model.adapters.keys()];
}

/** Folds the adapters into the base weights (W + scale A B) and removes them. */
export function mergeLora(model: LlamaModel): void {
  const lora = model.lora;
  if (!lora) return;
  const scale = lora.alpha / lora.rank;
  for (const layer of loraLayers(model, lora.targets)) {
    const name = `${layer}.weight`;
    // A QLoRA base is merged in float32: the merged weights are no longer on the NF4 grid.
    const q = model.quantized.get(name);
    const pk = model.packed.get(name);
    // A packed (q8_0, q4_0...) base is merged in float32 too.
    const W = q ? dequantizedTensor(q) : pk ? packedAsParameter(pk) : model.params.get(name)!;
    const merged = tf.tidy(() =>
      tf.add(
        W,
        tf.mul(tf.matMul(model.adapters.get(`${layer}.lora_A`)!, model.adapters.get(`${layer}.lora_B`)!), scale),
      ),
    );
    W.dispose();
    model.quantized.delete(name);
    model.packed.delete(name);
    model.params.set(name, merged);
  }
  dropLora(model);
}

/** f's result computed by the base alone, the LoRA adapter switched off (a reference model without a copy). */
export async function withAdapterOff<T>(model: LlamaModel, f: () => T | Promise<T>): Promise<T> {
  const lora = model.lora;
  model.lora = null;
  try {
    return await f();
  } finally {
    model.lora = lora;
  }
}

/** Removes the adapters (unmerged) and their settings. */
export function dropLora(model: LlamaModel): void {
  for (const t of model.adapters.values()) t.dispose();
  model.adapters.clear();
  model.lora = null;
}

// PEFT's key for a layer's adapter: base_model.model.<layer>.lora_A.weight, stored [r, in] / [out, r].
const peftKey = (layer: string, ab: 'A' | 'B') => `base_model.model.${layer}.lora_${ab}.weight`;

/** Writes adapter_config.json and adapter_model.safetensors in PEFT's layout (atomically). */
export function saveAdapter(dir: string, model: LlamaModel, base = ''): void {
  const lora = model.lora;
  if (!lora) throw new LlmboxError('the model has no LoRA adapters to save');
  const raw = new Map<string, RawTensor>();
  for (const layer of loraLayers(model, lora.targets)) {
    for (const ab of ['A', 'B'] as const) {
      raw.set(peftKey(layer, ab), transposedData(model.adapters.get(`${layer}.lora_${ab}`)!));
    }
  }
  writeSafetensors(join(dir, 'adapter_model.safetensors'), raw);
  const config = {
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: base,
    r: lora.rank,
    lora_alpha: lora.alpha,
    lora_dropout: lora.dropout,
    target_modules: lora.targets.includes('all-linear')
      ? presentLinears(model).map((full) => full.split('.').pop()!)
      : lora.targets,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    use_rslora: false,
  };
  writeFileAtomic(join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2) + '\n');
}

/** Loads a PEFT LoRA adapter folder onto a base model (unmerged; mergeLora folds it in). */
export function loadAdapter(dir: string, model: LlamaModel): LoraSettings {
  const cfgFile = join(dir, 'adapter_config.json');
  if (!existsSync(cfgFile))
    throw new LlmboxError('not a PEFT adapter folder: adapter_config.json is missing', { file: cfgFile });
  const cfg = JSON.parse(readFileSync(cfgFile, 'utf8')) as {
    peft_type?: string;
    r?: number;
    lora_alpha?: number;
    lora_dropout?: number;
    target_modules?: string[] | string;
  };
  if (cfg.peft_type !== 'LORA')
    throw new LlmboxError(`peft_type ${cfg.peft_type} is not supported`, {
      file: cfgFile,
      field: 'peft_type',
      fix: 'only LORA adapters load',
    });
  const targets = typeof cfg.target_modules === 'string' ? [cfg.target_modules] : (cfg.target_modules ?? []);
  const rank = cfg.r ?? DEFAULTS.lora.rank;
  addLora(model, { rank, alpha: cfg.lora_alpha ?? rank, dropout: cfg.lora_dropout ?? 0, targets });
  const file = join(dir, 'adapter_model.safetensors');
  const raw = readSafetensors(file);
  for (const layer of loraLayers(model, targets)) {
    for (const ab of ['A', 'B'] as const) {
      const key = peftKey(layer, ab);
      const t = raw.get(key) ?? raw.get(key.replace('.weight', '.default.weight'));
      const name = `${layer}.lora_${ab}`;
      const want = model.adapters.get(name)!.shape;
      if (!t || t.shape[0] !== want[1] || t.shape[1] !== want[0]) {
        throw new LlmboxError(
          `adapter tensor ${key} is missing or has shape [${t?.shape}], expected [${want[1]}, ${want[0]}]`,
          { file, field: key },
        );
      }
      model.adapters.get(name)!.dispose();
      model.adapters.set(
        name,
        tf.tidy(() => tf.transpose(tf.tensor2d(t.data as Float32Array, t.shape as [number, number]))),
      );
    }
  }
  return model.lora!;
}
