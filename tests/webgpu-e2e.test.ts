// Needs ../shared/data (the eval and training sets): scripts/test.mjs skips this file without it.
// The webgpu backend on SwiftShader, end to end: CI installs webgpu, libvulkan1 and chromium.
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { webgpuInstalled } from '../lib/engine/webgpu.js';
import { SHARED_DATA, tmp } from './helpers/models.js';

const ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';
const AVAILABLE = webgpuInstalled() && existsSync(ICD);

// End to end in child processes (one engine per process): the same command on webgpu and on wasm.
describe.skipIf(!AVAILABLE && !process.env.CI)('webgpu end to end against wasm', () => {
  const bin = join(import.meta.dirname, '..', 'bin', 'llmbox.js');
  const xdg = tmp('llmbox-xdg-');
  const run = (backend: string, args: string[]) => {
    const r = spawnSync(process.execPath, [bin, ...args, '--backend', backend, '--json'], {
      encoding: 'utf8',
      env: { ...process.env, VK_ICD_FILENAMES: ICD, XDG_RUNTIME_DIR: xdg, LLMBOX_QUIET: '1' },
      timeout: 600_000,
    });
    expect(r.status, r.stderr.slice(-2000)).toBe(0);
    return JSON.parse(r.stdout);
  };

  it('env reports the adapter; eval gives the same scores as wasm', () => {
    expect(run('webgpu', ['env']).adapter).toMatchObject({ vendor: 'google', software: true });
    const args = ['eval', '-m', 'stories260K', '-d', 'arc_easy', '--limit', '6'];
    const [gpu, cpu] = [run('webgpu', args), run('wasm', args)];
    expect(gpu.fingerprint.backend).toBe('webgpu');
    expect(gpu.fingerprint.model_hash).toBe(cpu.fingerprint.model_hash);
    for (const k of ['acc', 'acc_norm']) expect(gpu.results.arc_easy[k]).toBe(cpu.results.arc_easy[k]);
  }, 600_000);

  it('generates the same greedy text and trains to the same losses as wasm', () => {
    const gen = ['generate', '-m', 'stories260K', '--prompt', 'Once upon a time', '--max-new-tokens', '12'];
    expect(run('webgpu', gen).text).toBe(run('wasm', gen).text);
    const train = (backend: string, extra: string[] = []) =>
      run(backend, [
        'train',
        '-m',
        'stories260K',
        '--dataset',
        join(SHARED_DATA, 'sft_samples', 'dolly_hhrlhf_train_small.jsonl'),
        '--max-steps',
        '2',
        '--batch-size',
        '1',
        '--max-length',
        '64',
        '--output',
        join(tmp('llmbox-wgpu-train-'), backend),
        ...extra,
      ]);
    const [gpu, cpu] = [train('webgpu'), train('wasm')];
    gpu.losses.forEach((l: number, i: number) => expect(Math.abs(l - cpu.losses[i])).toBeLessThan(1e-4));
    // packed rows: the fused packed-attention kernel on webgpu, segment buckets on wasm
    const [gp, cp] = [train('webgpu', ['--packing']), train('wasm', ['--packing'])];
    gp.losses.forEach((l: number, i: number) => expect(Math.abs(l - cp.losses[i])).toBeLessThan(1e-4));
  }, 600_000);

  it('DPO and PPO (LoRA) give the same losses and rewards as wasm', () => {
    const dir = tmp('llmbox-wgpu-align-');
    const pairs = join(dir, 'pairs.jsonl');
    writeFileSync(
      pairs,
      ['cat', 'dog', 'bird', 'fish']
        .map((a) =>
          JSON.stringify({ prompt: `Tell me about the ${a}.`, chosen: 'Once upon a time.', rejected: 'zzz qqq.' }),
        )
        .join('\n') + '\n',
    );
    const lora = ['--lora-rank', '4', '--lora-targets', 'q_proj,v_proj'];
    const dpo = (backend: string) =>
      run(backend, [
        'train',
        '-m',
        'stories260K',
        '--stage',
        'dpo',
        '--dataset',
        pairs,
        '--max-steps',
        '2',
        '--batch-size',
        '2',
        '--max-length',
        '48',
        '--val-size',
        '2',
        '--lr',
        '5e-3',
        ...lora,
        '--output',
        join(dir, `dpo-${backend}`),
      ]);
    const [gd, cd] = [dpo('webgpu'), dpo('wasm')];
    expect(gd.losses[0]).toBeCloseTo(Math.LN2, 5);
    gd.losses.forEach((l: number, i: number) => expect(Math.abs(l - cd.losses[i])).toBeLessThan(1e-4));
    expect(Math.abs(gd.evals.at(-1).margin - cd.evals.at(-1).margin)).toBeLessThan(1e-4);
    const reward = join(dir, 'reward.mjs');
    writeFileSync(reward, 'export default (_p, r) => (r.match(/\\bthe\\b/gi) ?? []).length;\n');
    const ppo = (backend: string) =>
      run(backend, [
        'train',
        '-m',
        'stories260K',
        '--stage',
        'ppo',
        '--dataset',
        pairs,
        '--reward-module',
        reward,
        '--max-steps',
        '2',
        '--batch-size',
        '2',
        '--max-new-tokens',
        '6',
        ...lora,
        '--output',
        join(dir, `ppo-${backend}`),
      ]);
    const [gp, cp] = [ppo('webgpu'), ppo('wasm')];
    expect(gp.rewards).toEqual(cp.rewards);
    gp.kls.forEach((k: number, i: number) => expect(Math.abs(k - cp.kls[i])).toBeLessThan(1e-3));
  }, 900_000);
});
