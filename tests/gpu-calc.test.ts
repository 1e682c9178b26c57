import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../lib/models/load.js';
import { GPUS, gpuMemory, LLAMA2, minimumGpus } from '../lib/train/gpu-calc.js';
import { STORIES } from './helpers/models.js';

const BIN = fileURLToPath(new URL('../bin/llmbox.js', import.meta.url));
const llama7b = { params: 6_738_415_616, layers: 32, seq: 4096, hidden: 4096, vocab: 32000 };

describe('GPU memory calculator', () => {
  it('reproduces the paper: LLaMA-2 7B, n = 2, b = 8 needs 71.42 GiB per GPU under Eq. 1', () => {
    const r = gpuMemory({ ...llama7b, gpus: 2, batch: 8 });
    expect(r.gib.toFixed(2)).toBe('71.42');
    expect(r.parts.states).toBe((16 * llama7b.params) / 2);
    expect(r.parts.activations).toBe((12 + 2 * 32) * 8 * 4096 * 4096 + 12 * 8 * 4096 * 32000);
  });

  it('changes only the model-state term across settings, and counts LoRA adapters as 2hrl per target', () => {
    const base = { ...llama7b, gpus: 4, batch: 1 };
    const act = gpuMemory(base).parts.activations;
    expect(gpuMemory({ ...base, setting: 'ddp' }).parts).toEqual({ states: 16 * llama7b.params, activations: act });
    const lora = gpuMemory({ ...base, setting: 'lora', loraRank: 8, loraTargets: 4 });
    expect(lora.trainable).toBe(2 * 4096 * 8 * 32 * 4);
    expect(lora.parts.states).toBe(2 * llama7b.params + 16 * lora.trainable);
    expect(gpuMemory({ ...base, setting: 'qlora' }).parts.states).toBe(0.5 * llama7b.params + 16 * lora.trainable);
  });

  it('finds the fewest GPUs that fit 95% of memory: the count fits and one fewer does not', () => {
    for (const m of Object.values(LLAMA2)) {
      for (const gib of Object.values(GPUS)) {
        const r = minimumGpus({ ...m, seq: 2048, batch: 1, setting: 'zero3' }, gib)!;
        expect(gpuMemory({ ...m, seq: 2048, batch: 1, gpus: r.gpus }).gib).toBeLessThanOrEqual(0.95 * gib);
        if (r.gpus > 1)
          expect(gpuMemory({ ...m, seq: 2048, batch: 1, gpus: r.gpus - 1 }).gib).toBeGreaterThan(0.95 * gib);
      }
    }
    expect(minimumGpus({ ...LLAMA2['70B'], seq: 2048, batch: 1, setting: 'ddp' }, 80)).toBeNull();
  });

  it("llmbox gpu-calc: JSON, the model's own numbers with -m, the table, and clear errors", async () => {
    const j = JSON.parse(
      spawnSync(
        process.execPath,
        [
          BIN,
          'gpu-calc',
          '--params',
          '6738415616',
          '--layers',
          '32',
          '--seq',
          '4096',
          '--hidden',
          '4096',
          '--vocab',
          '32000',
          '--gpus',
          '2',
          '--batch',
          '8',
          '--json',
        ],
        { encoding: 'utf8' },
      ).stdout,
    );
    expect(j.per_gpu_gib.toFixed(2)).toBe('71.42');
    expect(j.note).toMatch(/float32/);
    const m = JSON.parse(
      spawnSync(process.execPath, [BIN, 'gpu-calc', '-m', STORIES, '--json'], { encoding: 'utf8' }).stdout,
    );
    const lm = await loadModel(STORIES);
    expect(m.params).toBe([...lm.model.params.values()].reduce((a, t) => a + t.size, 0));
    const t = JSON.parse(
      spawnSync(process.execPath, [BIN, 'gpu-calc', '--table', '--json'], { encoding: 'utf8' }).stdout,
    );
    expect(t.rows).toHaveLength(3 * 4 * 2);
    expect(
      t.rows.find(
        (r: { model: string; setting: string; gpu: string }) =>
          r.model === 'LLaMA-2 7B' && r.setting === 'zero3' && r.gpu === 'A100 80G',
      ).gpus,
    ).toBe(2);
    const bad = spawnSync(
      process.execPath,
      [BIN, 'gpu-calc', '--params', '-5', '--layers', '1', '--hidden', '1', '--vocab', '1'],
      { encoding: 'utf8' },
    );
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--params must be a number in \(0, Infinity\]/);
  });
});
