import * as tf from '@tensorflow/tfjs';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { LlmboxError } from '../errors.js';
import { LlamaModel } from '../models/llama.js';
import { readModelWeights, readSafetensors, writeSafetensors, type RawTensor } from '../models/safetensors.js';
import { saveModel, type LoadedModel } from '../models/load.js';
import { writeFileAtomic } from '../util/fs.js';
import { processAlive } from '../util/process.js';
import { readableOnHost } from '../engine/webgpu.js';
import { dropLora, loadAdapter, saveAdapter } from './lora.js';
import type { AdamW } from './optim.js';

/** What a checkpoint records besides weights: enough to continue the same run. */
export interface TrainerState {
  step: number;
  losses: number[];
  evalLosses: { step: number; loss: number }[];
  /** Hash of the options that must not change across a resume (data, schedule, batch layout). */
  runKey: string;
  log: Record<string, number>[];
  /** Whatever else the stage must carry across a resume (PPO's KL coefficient). */
  extra?: Record<string, number>;
}

/** The model (or its LoRA adapter) in Hugging Face layout, with tokenizer and generation config. */
export function saveWeights(dir: string, loaded: LoadedModel): void {
  if (loaded.model.lora) {
    saveAdapter(dir, loaded.model, loaded.dir);
    return;
  }
  saveModel(dir, loaded.model, { tokenizerFrom: loaded.dir, generation: loaded.generation });
}

const WEIGHT_FILES = ['model.safetensors', 'adapter_model.safetensors'];

/**
 * The final model into `output` itself (beside its checkpoints): written whole to a temporary
 * folder, then moved in with the weights last, so an interrupted save never leaves weights without
 * their config and tokenizer (at worst, no new weights: the folder does not load as a half model).
 */
export async function saveFinal(output: string, loaded: LoadedModel): Promise<void> {
  await readableOnHost([...loaded.model.params.values(), ...loaded.model.adapters.values()]);
  cleanStaleTemps(output);
  const tmp = join(output, `.final.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  saveWeights(tmp, loaded);
  const files = readdirSync(tmp).sort((a, b) => Number(WEIGHT_FILES.includes(a)) - Number(WEIGHT_FILES.includes(b)));
  // Old weights go first: a crash mid-move must not pair old weights with the new config.
  for (const f of WEIGHT_FILES) rmSync(join(output, f), { force: true });
  for (const f of files) renameSync(join(tmp, f), join(output, f));
  rmSync(tmp, { recursive: true, force: true });
}

/** Temporary folders of interrupted saves (checkpoint-N.tmp-PID, .final.tmp-PID) whose process is gone. */
export function cleanStaleTemps(output: string): void {
  if (!existsSync(output)) return;
  for (const name of readdirSync(output)) {
    const pid = Number(/\.tmp-(\d+)$/.exec(name)?.[1]);
    if (!pid || pid === process.pid || processAlive(pid)) continue;
    rmSync(join(output, name), { recursive: true, force: true });
  }
}

function tensorsToRaw(prefix: string, m: Map<string, tf.Tensor>, out: Map<string, RawTensor>) {
  for (const [k, t] of m) out.set(`${prefix}.${k}`, { shape: t.shape, data: t.dataSync() as Float32Array });
}

/**
 * Writes `output/checkpoint-<step>` atomically: everything goes to a temporary folder that is renamed
 * into place, so a crash leaves the previous checkpoint intact. Keeps the newest `keep` checkpoints.
 */
export async function writeCheckpoint(
  output: string,
  loaded: LoadedModel,
  opt: AdamW,
  state: TrainerState,
  keep = 2,
  heads: string[] = [],
): Promise<string> {
  await readableOnHost([
    ...loaded.model.params.values(),
    ...loaded.model.adapters.values(),
    ...opt.m.values(),
    ...opt.v.values(),
  ]);
  const final = join(output, `checkpoint-${state.step}`);
  cleanStaleTemps(output);
  const tmp = `${final}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  saveWeights(tmp, loaded);
  const raw = new Map<string, RawTensor>();
  tensorsToRaw('m', opt.m, raw);
  tensorsToRaw('v', opt.v, raw);
  writeSafetensors(join(tmp, 'optimizer.safetensors'), raw, { step: String(opt.step) });
  // Heads that train beside the decoder (a reward or value head): an adapter folder does not hold them.
  if (heads.length) {
    const own = new Map(heads.map((h) => [h, loaded.model.params.get(h)!]));
    const headRaw = new Map<string, RawTensor>();
    tensorsToRaw('head', own, headRaw);
    writeSafetensors(join(tmp, 'heads.safetensors'), headRaw);
  }
  writeFileAtomic(join(tmp, 'trainer_state.json'), JSON.stringify(state) + '\n');
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  const old = listCheckpoints(output).slice(0, -keep);
  for (const c of old) rmSync(c.dir, { recursive: true, force: true });
  return final;
}

export function listCheckpoints(output: string): { step: number; dir: string }[] {
  if (!existsSync(output)) return [];
  return readdirSync(output)
    .map((n) => /^checkpoint-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null && existsSync(join(output, m[0], 'trainer_state.json')))
    .map((m) => ({ step: Number(m[1]), dir: join(output, m[0]) }))
    .sort((a, b) => a.step - b.step);
}

/** Loads the newest checkpoint's weights and optimizer state into the run; returns its state, or null when there is none. */
export function restoreCheckpoint(
  output: string,
  loaded: LoadedModel,
  opt: AdamW,
  runKey: string,
  heads: string[] = [],
): TrainerState | null {
  cleanStaleTemps(output);
  const last = listCheckpoints(output).pop();
  if (!last) return null;
  const state = JSON.parse(readFileSync(join(last.dir, 'trainer_state.json'), 'utf8')) as TrainerState;
  if (state.runKey !== runKey) {
    throw new LlmboxError('the checkpoint was written by a run with different data or settings', {
      file: join(last.dir, 'trainer_state.json'),
      field: 'runKey',
      fix: 'resume with the same arguments, or use a new --output (or drop --resume)',
    });
  }
  if (loaded.model.lora) {
    const settings = loaded.model.lora;
    dropLora(loaded.model);
    loadAdapter(last.dir, loaded.model);
    loaded.model.lora = settings; // dropout and targets as this run set them
  } else {
    const restored = LlamaModel.fromRaw(
      loaded.model.config,
      readModelWeights(last.dir),
      join(last.dir, 'model.safetensors'),
    );
    for (const [k, t] of restored.params) {
      loaded.model.params.get(k)?.dispose();
      loaded.model.params.set(k, t);
    }
  }
  if (heads.length) {
    for (const [k, t] of readSafetensors(join(last.dir, 'heads.safetensors'))) {
      const name = k.slice('head.'.length);
      loaded.model.params.get(name)?.dispose();
      loaded.model.params.set(name, tf.tensor(t.data as Float32Array, t.shape));
    }
  }
  opt.dispose();
  const raw = readSafetensors(join(last.dir, 'optimizer.safetensors'));
  for (const [k, t] of raw) {
    const [which, ...rest] = k.split('.');
    (which === 'm' ? opt.m : opt.v).set(rest.join('.'), tf.tensor(t.data as Float32Array, t.shape));
  }
  opt.step = state.step;
  return state;
}

/**
 * The checkpoints of a stage that logs a record per step (and held-out evaluations): on --resume the
 * newest checkpoint's weights (or adapter), heads, optimizer state and logs, refused when the run's
 * settings differ; save() writes the next atomically.
 */
export class StageCheckpoints<Step, Eval> {
  readonly metrics: Step[];
  readonly evals: Eval[];
  readonly startStep: number;
  readonly resumed: boolean;
  readonly extra: Record<string, number> | undefined;
  checkpoint: string | null = null;
  private readonly runKey: string;

  constructor(
    private readonly o: { output?: string; resume?: boolean; saveTotalLimit?: number },
    private readonly loaded: LoadedModel,
    private readonly opt: AdamW,
    settings: unknown,
    private readonly heads: string[] = [],
  ) {
    this.runKey = createHash('sha256').update(JSON.stringify(settings)).digest('hex').slice(0, 16);
    if (o.output) mkdirSync(o.output, { recursive: true });
    const restored = o.resume && o.output ? restoreCheckpoint(o.output, loaded, opt, this.runKey, heads) : null;
    this.metrics = (restored?.log ?? []) as unknown as Step[];
    this.evals = (restored?.evalLosses ?? []) as unknown as Eval[];
    this.startStep = restored?.step ?? 0;
    this.resumed = !!restored;
    this.extra = restored?.extra;
  }

  async save(step: number, extra?: Record<string, number>): Promise<void> {
    const log = this.metrics as unknown as Record<string, number>[];
    const state: TrainerState = {
      step,
      losses: log.map((m) => m.loss).filter((x) => x !== undefined),
      evalLosses: this.evals as unknown as TrainerState['evalLosses'],
      runKey: this.runKey,
      log,
      ...(extra ? { extra } : {}),
    };
    this.checkpoint = await writeCheckpoint(
      this.o.output!,
      this.loaded,
      this.opt,
      state,
      this.o.saveTotalLimit ?? 2,
      this.heads,
    );
  }
}
