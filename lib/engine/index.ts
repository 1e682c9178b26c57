import * as tf from '@tensorflow/tfjs';
import { LlmboxError } from '../errors.js';
import '@tensorflow/tfjs-backend-wasm';
import { availableParallelism } from 'node:os';
import { nativeBatchMatMulConfig } from './kernels/batch-matmul.js';
import { nativeCrossEntropyConfigs } from './kernels/cross-entropy.js';
import { nativeEmbeddingGradConfig } from './kernels/embedding-grad.js';
import { nativeRopeConfig } from './kernels/rope.js';
import { nativeQuantGatherConfig, nativeQuantMatMulConfig } from './kernels/quant-matmul.js';
import { nativeRmsNormConfig } from './kernels/rms-norm.js';
import { fastSliceConfig } from './kernels/slice.js';
import { loadNative, type NativeAddon } from './native.js';
import { registerWebGpuKernels } from './kernels/webgpu/index.js';
import { hardwareWebGpu, registerWebGpu, webgpuAdapter, webgpuInstalled, type WebGpuAdapter } from './webgpu.js';

export type BackendName = 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';

export interface EngineOptions {
  /** Force a backend; defaults to LLMBOX_BACKEND, else the best one available. */
  backend?: BackendName;
  /** Compute threads (BLAS). Defaults to LLMBOX_THREADS, else the number of cores. */
  threads?: number;
}

export interface EngineInfo {
  backend: BackendName;
  threads: number;
  native: { enabled: boolean; blas?: string; path: string; reason?: string };
  /** The WebGPU adapter, on the webgpu backend. */
  adapter?: WebGpuAdapter;
  versions: { tfjs: string; node: string };
}

export const BACKENDS: readonly BackendName[] = ['tensorflow', 'webgpu', 'wasm', 'cpu'];
let current: EngineInfo | undefined;
let pending: Promise<EngineInfo> | undefined;
let nativeRegistered = false;
let sliceRegistered = false;
let warnedNoNative = false;

/** The native add-on when it is loaded and the wasm backend is active, else null. */
export function nativeAddon(): NativeAddon | null {
  return current?.backend === 'wasm' && current.native.enabled ? loadNative().addon : null;
}

export function engineInfo(): EngineInfo | undefined {
  return current;
}

/**
 * Picks and initialises the tfjs backend once per process: tfjs-node(-gpu) when the user has
 * installed it, else wasm (with the native BLAS kernels when built), else cpu.
 */
export function initEngine(opts: EngineOptions = {}): Promise<EngineInfo> {
  const wanted = opts.backend ?? parseBackend(process.env.LLMBOX_BACKEND);
  if (
    current &&
    (!wanted || wanted === current.backend) &&
    (opts.threads === undefined || opts.threads === current.threads)
  ) {
    return Promise.resolve(current);
  }
  if (pending && !wanted && opts.threads === undefined) return pending;
  pending = doInit(wanted, opts.threads).then((info) => (current = info));
  return pending;
}

function parseBackend(v: string | undefined): BackendName | undefined {
  if (!v) return undefined;
  if ((BACKENDS as readonly string[]).includes(v)) return v as BackendName;
  throw new Error(`LLMBOX_BACKEND=${v} is not a backend; use one of ${BACKENDS.join(', ')}`);
}

function defaultThreads(): number {
  const env = Number(process.env.LLMBOX_THREADS);
  return Number.isInteger(env) && env > 0 ? env : availableParallelism();
}

async function tryTensorflow(): Promise<boolean> {
  // Optional: the user installs tfjs-node(-gpu) themselves; the names are not literals so that
  // bundlers and the type checker do not require them.
  for (const name of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(name);
      if (await tf.setBackend('tensorflow')) return true;
    } catch {
      // not installed, or its native library failed to load: fall through to the next backend
    }
  }
  return false;
}

/**
 * WebGPU when asked for, or (automatically) when the machine has a hardware adapter: a software one
 * (SwiftShader) is only ever used when asked for.
 */
async function tryWebGpu(asked: boolean): Promise<boolean> {
  if (!webgpuInstalled()) {
    if (asked)
      throw webgpuUnavailable('the optional packages webgpu and @tensorflow/tfjs-backend-webgpu are not installed');
    return false;
  }
  if (!asked && !hardwareWebGpu()) return false;
  const adapter = await registerWebGpu();
  if (!adapter) {
    if (asked) throw webgpuUnavailable('Dawn found no WebGPU adapter');
    return false;
  }
  return tf.setBackend('webgpu').catch(() => false);
}

/** The webgpu backend was asked for and cannot run here: what to install or set. */
function webgpuUnavailable(why: string): LlmboxError {
  return new LlmboxError(`the webgpu backend cannot start: ${why}`, {
    field: '--backend webgpu (LLMBOX_BACKEND)',
    fix: 'WebGPU needs a Vulkan, Metal or D3D12 driver (Linux: the Vulkan loader libvulkan1 and the GPU driver); without a GPU, SwiftShader runs it slowly: VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json (Debian chromium) with XDG_RUNTIME_DIR set; or pick another --backend',
  });
}

async function doInit(wanted: BackendName | undefined, threadsOpt: number | undefined): Promise<EngineInfo> {
  const threads = threadsOpt ?? defaultThreads();
  const order: BackendName[] = wanted ? [wanted] : [...BACKENDS];
  let chosen: BackendName | undefined;
  for (const name of order) {
    const ok =
      name === 'tensorflow'
        ? await tryTensorflow()
        : name === 'webgpu'
          ? await tryWebGpu(wanted === 'webgpu')
          : await tf.setBackend(name).catch(() => false);
    if (ok) {
      chosen = name;
      break;
    }
  }
  if (!chosen) throw new Error(`llmbox: backend ${order.join('/')} could not be initialised`);
  await tf.ready();
  if (chosen === 'webgpu') registerWebGpuKernels();

  if (chosen === 'wasm' && !sliceRegistered) {
    const original = tf.getKernel(tf.Slice, 'wasm');
    if (original) {
      tf.unregisterKernel(tf.Slice, 'wasm');
      tf.registerKernel(fastSliceConfig(original));
    }
    sliceRegistered = true;
  }

  const native = loadNative();
  let blas: string | undefined;
  if (chosen === 'wasm' && native.addon) {
    native.addon.setThreads(threads);
    blas = native.addon.blasInfo();
    if (!nativeRegistered) {
      const original = tf.getKernel(tf.BatchMatMul, 'wasm');
      if (!original) throw new Error('llmbox: tfjs-wasm has no BatchMatMul kernel to extend');
      tf.unregisterKernel(tf.BatchMatMul, 'wasm');
      tf.registerKernel(nativeBatchMatMulConfig(native.addon, original));
      for (const k of nativeCrossEntropyConfigs(native.addon)) tf.registerKernel(k);
      tf.registerKernel(nativeEmbeddingGradConfig(native.addon));
      tf.registerKernel(nativeRopeConfig(native.addon));
      tf.registerKernel(nativeQuantMatMulConfig(native.addon));
      tf.registerKernel(nativeQuantGatherConfig(native.addon));
      tf.registerKernel(nativeRmsNormConfig(native.addon));
      nativeRegistered = true;
    }
  } else if (chosen === 'wasm' && !warnedNoNative && process.env.LLMBOX_QUIET !== '1') {
    warnedNoNative = true;
    process.stderr.write(`llmbox: native kernels off (${native.reason}); running on plain tfjs-wasm\n`);
  }
  return {
    backend: chosen,
    threads,
    native: { enabled: chosen === 'wasm' && !!native.addon, blas, path: native.path, reason: native.reason },
    ...(chosen === 'webgpu' ? { adapter: webgpuAdapter()! } : {}),
    versions: { tfjs: tf.version.tfjs, node: process.versions.node },
  };
}

export { tf };
