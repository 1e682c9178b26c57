import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LlmboxError } from '../lib/errors.js';
import { initEngine } from '../lib/engine/index.js';
import { loadModel, randomModel, saveModel } from '../lib/models/load.js';
import { readSafetensors, writeSafetensors } from '../lib/models/safetensors.js';
import { STORIES, TINY_CONFIGS, tmp } from './helpers/models.js';

function copyStories(): string {
  const dir = tmp();
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
    copyFileSync(`${STORIES}/${f}`, `${dir}/${f}`);
  }
  return dir;
}

async function loadError(dir: string): Promise<LlmboxError> {
  const err = await loadModel(dir).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(LlmboxError);
  return err as LlmboxError;
}

/** A safetensors file with a hand-written header, for dtype and corruption cases. */
function rawSafetensors(file: string, header: object, body: Uint8Array) {
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  writeFileSync(file, Buffer.concat([len, h, body]));
}

describe('loading errors name the file, the field and the fix', () => {
  it('missing folder and missing weights', async () => {
    expect((await loadError('/nonexistent/model')).file).toBe('/nonexistent/model');
    const dir = tmp();
    writeFileSync(`${dir}/config.json`, readFileSync(`${STORIES}/config.json`));
    const e = await loadError(dir);
    expect(e.message).toMatch(/no weights found/);
    expect(e.file).toBe(`${dir}/model.safetensors`);
  });

  it('unknown architecture', async () => {
    const dir = copyStories();
    const cfg = JSON.parse(readFileSync(`${dir}/config.json`, 'utf8'));
    writeFileSync(`${dir}/config.json`, JSON.stringify({ ...cfg, model_type: 'gpt2' }));
    const e = await loadError(dir);
    expect(e.field).toBe('model_type');
    expect(e.message).toMatch(/gpt2/);
    expect(e.fix).toMatch(/llama, mistral, qwen2/);
  });

  it('missing and mistyped config fields', async () => {
    const dir = copyStories();
    const cfg = JSON.parse(readFileSync(`${dir}/config.json`, 'utf8'));
    delete cfg.hidden_size;
    writeFileSync(`${dir}/config.json`, JSON.stringify(cfg));
    expect((await loadError(dir)).field).toBe('hidden_size');
    writeFileSync(`${dir}/config.json`, JSON.stringify({ ...cfg, hidden_size: '64' }));
    expect((await loadError(dir)).field).toBe('hidden_size');
  });

  it('shape mismatch between config and weights', async () => {
    const dir = copyStories();
    const cfg = JSON.parse(readFileSync(`${dir}/config.json`, 'utf8'));
    writeFileSync(`${dir}/config.json`, JSON.stringify({ ...cfg, intermediate_size: 128 }));
    const e = await loadError(dir);
    expect(e.field).toBe('model.layers.0.mlp.gate_proj.weight');
    expect(e.message).toMatch(/\[172,64\].*\[128,64\]/);
    expect(e.file).toBe(`${dir}/model.safetensors`);
  });

  it('corrupt safetensors header and truncated data', async () => {
    const dir = copyStories();
    const bytes = readFileSync(`${dir}/model.safetensors`);
    writeFileSync(`${dir}/model.safetensors`, bytes.subarray(0, bytes.length - 100));
    const truncated = await loadError(dir);
    expect(truncated.message).toMatch(/corrupt safetensors/);
    expect(truncated.field).toMatch(/data_offsets/);
    const garbage = Buffer.from(bytes);
    garbage.writeBigUInt64LE(10n ** 12n, 0);
    writeFileSync(`${dir}/model.safetensors`, garbage);
    expect((await loadError(dir)).message).toMatch(/header length/);
    const notJson = Buffer.from('{not json}');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(notJson.length));
    writeFileSync(`${dir}/model.safetensors`, Buffer.concat([len, notJson]));
    expect((await loadError(dir)).message).toMatch(/header is not JSON/);
  });

  it('unknown dtype', () => {
    const file = `${tmp()}/w.safetensors`;
    rawSafetensors(file, { w: { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 2] } }, new Uint8Array(2));
    const e = (() => {
      try {
        readSafetensors(file);
      } catch (err) {
        return err as LlmboxError;
      }
    })();
    expect(e?.field).toBe('w.dtype');
    expect(e?.fix).toMatch(/F32, F16, BF16/);
  });
});

describe('safetensors', () => {
  it('converts F16 and BF16 to float32 exactly', () => {
    const file = `${tmp()}/w.safetensors`;
    // 1.0, -2.5, 65504 (max half), 2^-24 (smallest subnormal half)
    const f16 = new Uint16Array([0x3c00, 0xc100, 0x7bff, 0x0001]);
    // bf16 is the top half of a float32: 1.0, -2.5, 3.140625
    const bf16 = new Uint16Array([0x3f80, 0xc020, 0x4049]);
    const body = new Uint8Array([...new Uint8Array(f16.buffer), ...new Uint8Array(bf16.buffer)]);
    rawSafetensors(file, { a: { dtype: 'F16', shape: [4], data_offsets: [0, 8] }, b: { dtype: 'BF16', shape: [3], data_offsets: [8, 14] } }, body);
    const t = readSafetensors(file);
    expect([...t.get('a')!.data]).toEqual([1, -2.5, 65504, 2 ** -24]);
    expect([...t.get('b')!.data]).toEqual([1, -2.5, 3.140625]);
  });

  it('round-trips float32 tensors and reads shards through the index', async () => {
    await initEngine();
    const dir = tmp();
    const model = randomModel(TINY_CONFIGS['qwen2 attention bias, tied'], { seed: 2 });
    saveModel(dir, model);
    const all = readSafetensors(`${dir}/model.safetensors`);
    const names = [...all.keys()];
    const shard = (part: string[], file: string) => writeSafetensors(`${dir}/${file}`, new Map(part.map((n) => [n, all.get(n)!])));
    shard(names.slice(0, 10), 'model-00001-of-00002.safetensors');
    shard(names.slice(10), 'model-00002-of-00002.safetensors');
    const weightMap = Object.fromEntries(names.map((n, i) => [n, i < 10 ? 'model-00001-of-00002.safetensors' : 'model-00002-of-00002.safetensors']));
    writeFileSync(`${dir}/model.safetensors.index.json`, JSON.stringify({ weight_map: weightMap }));
    rmSync(`${dir}/model.safetensors`);
    const back = await loadModel(dir);
    for (const [n, t] of model.params) expect(back.model.params.get(n)!.dataSync()).toEqual(t.dataSync());
  });
});
