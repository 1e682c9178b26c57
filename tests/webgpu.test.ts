// The webgpu backend on SwiftShader (Dawn's software Vulkan; Debian's chromium ships it): llmbox's WGSL
// kernels against their composed references, and the shipped model against llama2.c. Needs the optional
// packages webgpu and @tensorflow/tfjs-backend-webgpu, libvulkan1 and chromium; CI installs them, so there
// a missing piece fails the suite instead of skipping it.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { describe, expect, it, beforeAll } from 'vitest';
import { initEngine, tf } from '../lib/engine/index.js';
import {
  hasKernel,
  loraLinear,
  loraLinearReference,
  packedAttention,
  packedAttentionFused,
  packedAttentionReference,
  prefixAttention,
  prefixAttentionReference,
  rmsNorm,
  rmsNormReference,
  segmentBounds,
} from '../lib/engine/ops.js';
import { webgpuInstalled } from '../lib/engine/webgpu.js';
import { RMS_NORM } from '../lib/engine/kernels/rms-norm.js';
import { LORA_LINEAR } from '../lib/engine/kernels/webgpu/lora-linear.js';
import { PREFIX_ATTENTION } from '../lib/engine/kernels/webgpu/prefix-attention.js';
import { LlamaModel } from '../lib/models/llama.js';
import { loadModel } from '../lib/models/load.js';
import { STORIES, tmp } from './helpers/models.js';

const ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
const AVAILABLE = webgpuInstalled() && existsSync(ICD);

const maxDiff = async (a: tf.Tensor, b: tf.Tensor) => {
  const [x, y] = await Promise.all([a.data(), b.data()]);
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - y[i]));
  return m;
};

describe.skipIf(!AVAILABLE && !process.env.CI)('webgpu backend on SwiftShader', () => {
  beforeAll(async () => {
    process.env.VK_ICD_FILENAMES = ICD;
    process.env.XDG_RUNTIME_DIR ??= tmp('llmbox-xdg-');
    mkdirSync(process.env.XDG_RUNTIME_DIR, { recursive: true, mode: 0o700 });
    const info = await initEngine({ backend: 'webgpu' });
    expect(info.backend).toBe('webgpu');
    expect(info.adapter).toMatchObject({ architecture: 'swiftshader', software: true });
  }, 60_000);

  it('registers llmbox kernels for webgpu', () => {
    expect(tf.getBackend()).toBe('webgpu');
    expect(hasKernel(RMS_NORM)).toBe(true);
    expect(hasKernel(LORA_LINEAR)).toBe(true);
    expect(hasKernel(PREFIX_ATTENTION)).toBe(true);
  });

  it('RMSNorm kernel equals the composed definition, forward and gradient', async () => {
    const x = tf.randomNormal([3, 5, 70], 0, 1, 'float32', 1);
    const w = tf.randomNormal([70], 1, 0.1, 'float32', 2) as tf.Tensor1D;
    expect(await maxDiff(rmsNorm(x, w, 1e-5), rmsNormReference(x, w, 1e-5))).toBeLessThan(1e-5);
    const dy = tf.randomNormal([3, 5, 70], 0, 1, 'float32', 3);
    const f = (g: typeof rmsNorm) =>
      tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(g(a, b as tf.Tensor1D, 1e-5), dy)));
    const [dx, dw] = f(rmsNorm)([x, w]);
    const [rx, rw] = f(rmsNormReference)([x, w]);
    expect(await maxDiff(dx, rx)).toBeLessThan(1e-4);
    expect(await maxDiff(dw, rw)).toBeLessThan(1e-3);
  });

  it('fused LoRA linear equals x W + s (x A) B, and its gradients for x, A and B', async () => {
    // sizes that are not multiples of the 32 x 32 tile, an inner dimension that straddles a tile edge
    const [n, k, r, o] = [37, 45, 4, 29];
    const x = tf.randomNormal([n, k], 0, 1, 'float32', 4) as tf.Tensor2D;
    const W = tf.randomNormal([k, o], 0, 0.2, 'float32', 5) as tf.Tensor2D;
    const A = tf.randomNormal([k, r], 0, 0.2, 'float32', 6) as tf.Tensor2D;
    const B = tf.randomNormal([r, o], 0, 0.2, 'float32', 7) as tf.Tensor2D;
    expect(await maxDiff(loraLinear(x, x, W, A, B, 2), loraLinearReference(x, x, W, A, B, 2))).toBeLessThan(1e-4);
    const dy = tf.randomNormal([n, o], 0, 1, 'float32', 8);
    const g = (f: typeof loraLinearReference) =>
      tf.grads((xi: tf.Tensor, a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(f(xi as tf.Tensor2D, xi as tf.Tensor2D, W, a as tf.Tensor2D, b as tf.Tensor2D, 2), dy)),
      )([x, A, B]);
    const fused = g(loraLinear);
    const ref = g(loraLinearReference);
    for (let i = 0; i < 3; i++) expect(await maxDiff(fused[i], ref[i])).toBeLessThan(1e-3);
  });

  it('prefix attention reads one shared prefix for every row and equals the composed definition', async () => {
    // batch 3, 2 kv heads, 2 query heads per kv head, 5 queries, 7 prefix slots, 9 own slots, head dim 16
    const [B, H, G, Tc, P, C, D] = [3, 2, 2, 5, 7, 9, 16];
    const q = tf.randomNormal([B, H, G * Tc, D], 0, 0.5, 'float32', 9) as tf.Tensor4D;
    const prefix = {
      keys: tf.randomNormal([1, H, P, D], 0, 0.5, 'float32', 10) as tf.Tensor4D,
      values: tf.randomNormal([1, H, P, D], 0, 1, 'float32', 11) as tf.Tensor4D,
    };
    const k = tf.randomNormal([B, H, C, D], 0, 0.5, 'float32', 12) as tf.Tensor4D;
    const v = tf.randomNormal([B, H, C, D], 0, 1, 'float32', 13) as tf.Tensor4D;
    // causal over the own slots, and row 1 cannot see the prefix's first 3 slots
    const m = new Float32Array(B * Tc * (P + C));
    for (let b = 0; b < B; b++)
      for (let t = 0; t < Tc; t++)
        for (let j = 0; j < P + C; j++) {
          const hidden = (j >= P && j - P > t + C - Tc) || (b === 1 && j < 3);
          m[(b * Tc + t) * (P + C) + j] = hidden ? -1e9 : 0;
        }
    const mask = tf.tensor4d(m, [B, 1, Tc, P + C]);
    for (const cap of [null, 2]) {
      const got = prefixAttention(q, prefix, k, v, mask, cap);
      expect(got.shape).toEqual([B, H, G * Tc, D]);
      expect(await maxDiff(got, prefixAttentionReference(q, prefix, k, v, mask, cap))).toBeLessThan(1e-5);
    }
  });

  it('packed-segment attention and its gradients equal the masked definition', async () => {
    // two rows: segments of 3 and 2 then padding; one segment of 6. 4 query heads on 2 key heads.
    const bounds = segmentBounds([
      [1, 1, 1, 2, 2, 0],
      [1, 1, 1, 1, 1, 1],
    ]);
    expect(bounds.longest).toBe(6);
    const [N, H, kvH, D] = [12, 4, 2, 8];
    const q = tf.randomNormal([N, H, D], 0, 0.5, 'float32', 14) as tf.Tensor3D;
    const k = tf.randomNormal([N, kvH, D], 0, 0.5, 'float32', 15) as tf.Tensor3D;
    const v = tf.randomNormal([N, kvH, D], 0, 1, 'float32', 16) as tf.Tensor3D;
    expect(packedAttentionFused(bounds.longest, H / kvH)).toBe(true);
    const ref = packedAttentionReference(q, k, v, bounds.starts);
    expect(await maxDiff(packedAttention(q, k, v, bounds), ref)).toBeLessThan(1e-5);
    const dy = tf.randomNormal([N, H, D], 0, 1, 'float32', 17);
    const grads = (f: (a: tf.Tensor3D, b: tf.Tensor3D, c: tf.Tensor3D) => tf.Tensor) =>
      tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
        tf.sum(tf.mul(f(a as tf.Tensor3D, b as tf.Tensor3D, c as tf.Tensor3D), dy)),
      )([q, k, v]);
    const fused = grads((a, b, c) => packedAttention(a, b, c, bounds));
    const want = grads((a, b, c) => packedAttentionReference(a, b, c, bounds.starts));
    for (let i = 0; i < 3; i++) expect(await maxDiff(fused[i], want[i])).toBeLessThan(1e-4);
  });

  it('stories260K logits agree with llama2.c within 1e-3', async () => {
    const ref = JSON.parse(readFileSync(`${STORIES}/REFERENCE.json`, 'utf8')) as {
      teacher_forcing: { ids: number[]; last_position_logits: number[] }[];
    };
    const tfc = ref.teacher_forcing[0];
    const lm = await loadModel(STORIES, { backend: 'webgpu' });
    const logits = tf.tidy(() => {
      const h = lm.model.forward([tfc.ids]);
      return lm.model.logits(LlamaModel.pickRows(h, [tfc.ids.length - 1]));
    });
    const got = await logits.data();
    let d = 0;
    got.forEach((v, i) => (d = Math.max(d, Math.abs(v - tfc.last_position_logits[i]))));
    expect(d).toBeLessThan(1e-3);
  }, 120_000);

  it('a packed row (fused kernel) gives each segment the hidden states it has alone', async () => {
    const lm = await loadModel(STORIES, { backend: 'webgpu' });
    const [x, y] = [lm.tokenizer!.encode('Once upon a time'), lm.tokenizer!.encode('The dog ran')];
    const run = () => lm.model.forward([[...x, ...y]], { segments: [[...x.map(() => 1), ...y.map(() => 2)]] });
    const prof = await tf.profile(run);
    expect(prof.kernels.map((k) => k.name)).toContain('LlmboxPackedAttention');
    const packed = run();
    const alone = tf.concat([lm.model.forward([x]), lm.model.forward([y])], 1);
    expect(await maxDiff(packed, alone)).toBeLessThan(1e-4);
  });

  // Last: the error it provokes is sticky for the process, by design.
  it('fails reads after the GPU rejects a computation, instead of returning what the buffer held', async () => {
    // 48 inputs to one addN exceed the per-stage storage-buffer limit: the shader is invalid
    const xs = Array.from({ length: 48 }, (_, i) => tf.scalar(i));
    await expect(tf.addN(xs).data()).rejects.toThrow(/GPU rejected a computation/);
  });
});
