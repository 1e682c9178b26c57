/// <reference types="@webgpu/types" />
import * as tf from '@tensorflow/tfjs';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cacheDir } from '../util/paths.js';
import { writeFileAtomic } from '../util/fs.js';

/** What `llmbox env` reports of a WebGPU adapter. */
export interface WebGpuAdapter {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A software rasteriser (SwiftShader, llvmpipe): correct, slow, never picked automatically. */
  software: boolean;
  /** `shader-f16`: the adapter can store and compute in half precision. */
  f16: boolean;
  features: string[];
  limits: Record<string, number>;
}

/** The two optional packages: Dawn's Node bindings and tfjs's WebGPU backend. */
// Typed as string: the type checker must not require optional packages.
const DAWN: string = 'webgpu';
const BACKEND: string = '@tensorflow/tfjs-backend-webgpu';
const SOFTWARE = /swiftshader|llvmpipe|lavapipe|softpipe|microsoft basic render/i;
const LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
] as const;

interface Dawn {
  create(options: string[]): GPU;
  globals: Record<string, unknown>;
}

/** Where an optional package resolves from this file, or null when it is not installed. */
function resolved(name: string): string | null {
  try {
    return createRequire(import.meta.url).resolve(name);
  } catch {
    return null;
  }
}

export const webgpuInstalled = (): boolean => resolved(DAWN) !== null && resolved(BACKEND) !== null;

/** Adapters carry `info` in current WebGPU (the installed @webgpu/types predate it). */
type Adapter = GPUAdapter & { info: GPUAdapterInfo & { isFallbackAdapter?: boolean } };

function describe(adapter: Adapter): WebGpuAdapter {
  const i = adapter.info;
  const limits: Record<string, number> = {};
  for (const k of LIMITS) limits[k] = Number(adapter.limits[k]);
  const text = `${i.vendor} ${i.architecture} ${i.device} ${i.description}`;
  const fallback = i.isFallbackAdapter === true;
  return {
    vendor: i.vendor,
    architecture: i.architecture,
    device: i.device,
    description: i.description,
    software: fallback || SOFTWARE.test(text),
    f16: adapter.features.has('shader-f16'),
    features: [...adapter.features].sort(),
    limits,
  };
}

let registered: WebGpuAdapter | null = null;

/**
 * Registers tfjs's `webgpu` backend on Dawn's adapter in this process (high-performance preference),
 * with the adapter's own buffer limits; null when Dawn finds no adapter. The backend's module reads
 * `navigator.gpu`, which Node does not have: it is set here, after the module loaded, so that the
 * module's own registration (without these limits) does not run.
 */
export async function registerWebGpu(): Promise<WebGpuAdapter | null> {
  if (registered) return registered;
  const dawnPath = resolved(DAWN);
  if (!dawnPath || !resolved(BACKEND)) return null;
  const dawn = (await import(pathToFileURL(dawnPath).href)) as Dawn;
  Object.assign(globalThis, dawn.globals);
  const gpu = dawn.create([]);
  const adapter = (await gpu.requestAdapter({ powerPreference: 'high-performance' })) as Adapter | null;
  if (!adapter) return null;
  const info = describe(adapter);
  const requiredLimits: Record<string, number> = {};
  for (const k of LIMITS) requiredLimits[k] = info.limits[k];
  const device = await adapter.requestDevice({
    requiredLimits,
    requiredFeatures: info.f16 ? ['shader-f16'] : [],
  });
  const { WebGPUBackend } = (await import(BACKEND)) as {
    WebGPUBackend: new (device: GPUDevice, info?: GPUAdapterInfo) => tf.KernelBackend;
  };
  const nav = ((globalThis as { navigator?: object }).navigator ??= {});
  Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true });
  const rejected = rejectedWork(device);
  tf.registerBackend('webgpu', () => guarded(new WebGPUBackend(device, adapter.info), rejected), 0);
  registered = info;
  return info;
}

/**
 * A shader the device rejects leaves its output unwritten: any result read afterwards would be a
 * believable wrong number. Returns a check that throws once the device has reported such an error.
 */
function rejectedWork(device: GPUDevice): () => void {
  let invalid: string | null = null;
  device.addEventListener('uncapturederror', (e) => {
    invalid ??= (e as GPUUncapturedErrorEvent).error.message.split('\n')[0];
  });
  return () => {
    if (invalid) throw new Error(`the GPU rejected a computation, so results are invalid: ${invalid}`);
  };
}

type Reads = { read(d: object): Promise<unknown>; readSync(d: object): unknown; hasReadSyncWarned: boolean };

/** The backend with every read checked for rejected work, and a plain error for a synchronous GPU read. */
function guarded(backend: tf.KernelBackend, check: () => void): tf.KernelBackend {
  const b = backend as unknown as Reads;
  // tfjs warns once that synchronous reads are slow; llmbox reads synchronously only host copies.
  b.hasReadSyncWarned = true;
  const [read, readSync] = [b.read.bind(b), b.readSync.bind(b)];
  b.read = async (dataId) => {
    const out = await read(dataId);
    check();
    return out;
  };
  // Node has no synchronous GPU readback (tfjs reads through an OffscreenCanvas): say so plainly.
  b.readSync = (dataId) => {
    check();
    try {
      return readSync(dataId);
    } catch (e) {
      if (!/OffscreenCanvas/.test(String(e))) throw e;
      throw new Error(
        'a step read a GPU tensor synchronously, which the webgpu backend cannot do in Node (llmbox reads asynchronously everywhere it knows of): run it with --backend wasm, and report the step',
      );
    }
  };
  return backend;
}

/** The adapter registerWebGpu found, once it has run. */
export const webgpuAdapter = (): WebGpuAdapter | null => registered;

const PROBE = `
const dawn = await import(process.argv[1]);
const a = await dawn.create([]).requestAdapter({ powerPreference: 'high-performance' });
const i = a?.info;
console.log(JSON.stringify(i ? { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description, fallback: i.isFallbackAdapter === true } : null));
`;

/**
 * Whether this machine has a hardware WebGPU adapter, for picking a backend automatically: asked in
 * a child process (Dawn writes its driver warnings straight to stderr, which a command's output must
 * not carry) and remembered for a day in LLMBOX_CACHE_DIR, keyed by what changes the answer.
 */
export function hardwareWebGpu(): boolean {
  const dawnPath = resolved(DAWN);
  if (!dawnPath || !resolved(BACKEND)) return false;
  const key = JSON.stringify({
    dawnPath,
    node: process.versions.node,
    icd: process.env.VK_ICD_FILENAMES ?? null,
    v: 1,
  });
  const file = join(cacheDir(), 'webgpu-probe.json');
  try {
    if (existsSync(file)) {
      const c = JSON.parse(readFileSync(file, 'utf8')) as { key: string; at: number; hardware: boolean };
      if (c.key === key && Date.now() - c.at < 86_400_000) return c.hardware;
    }
  } catch {
    // an unreadable cache is asked again
  }
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', PROBE, pathToFileURL(dawnPath).href], {
    encoding: 'utf8',
    timeout: 20_000,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let hardware = false;
  try {
    const a = JSON.parse(r.stdout.trim().split('\n').pop() ?? 'null') as {
      fallback: boolean;
      architecture: string;
      description: string;
      device: string;
    } | null;
    hardware = !!a && !a.fallback && !SOFTWARE.test(`${a.architecture} ${a.device} ${a.description}`);
  } catch {
    hardware = false;
  }
  try {
    mkdirSync(cacheDir(), { recursive: true });
    writeFileAtomic(file, JSON.stringify({ key, at: Date.now(), hardware }) + '\n');
  } catch {
    // a read-only cache only costs the probe next time
  }
  return hardware;
}

/**
 * Makes tensors readable synchronously (dataSync) before code that reads many at once (saving a
 * model): on webgpu each is read back asynchronously, which leaves a copy on the host; elsewhere
 * nothing is done (every other backend reads synchronously).
 */
export async function readableOnHost(tensors: Iterable<tf.Tensor>): Promise<void> {
  if (tf.getBackend() !== 'webgpu') return;
  for (const t of tensors) await t.data();
}
