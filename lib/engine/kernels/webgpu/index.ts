import * as tf from '@tensorflow/tfjs';
import { webgpuLoraLinearConfig } from './lora-linear.js';
import { webgpuPackedAttentionConfigs } from './packed-attention.js';
import { webgpuPrefixAttentionConfig } from './prefix-attention.js';
import { webgpuRmsNormConfig } from './rms-norm.js';

let done = false;

/** llmbox's WGSL kernels, registered for the webgpu backend once (ops.ts uses them where they exist). */
export function registerWebGpuKernels(): void {
  if (done) return;
  for (const k of [
    webgpuRmsNormConfig,
    webgpuLoraLinearConfig,
    webgpuPrefixAttentionConfig,
    ...webgpuPackedAttentionConfigs,
  ])
    tf.registerKernel(k);
  done = true;
}
