import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LlmboxError } from '../lib/errors.js';
import { initEngine, tf } from '../lib/engine/index.js';
import { parseConfig } from '../lib/models/config.js';
import { parameterShapes, refuseHeapOverflow, WASM_HEADROOM_BYTES } from '../lib/models/llama.js';
import type { PackedMatrix } from '../lib/engine/ops.js';
import { generate } from '../lib/models/generate.js';
import { nextTokenLogprobs } from '../lib/models/score.js';
import { loadModel, randomModel, saveModel } from '../lib/models/load.js';
import { readSafetensors, writeSafetensors } from '../lib/models/safetensors.js';
import { STORIES, TINY_CONFIGS, tmp } from './helpers/models.js';

function copyStories(): string {
  const dir = tmp();
  for (const f of [
    'config.json',
    'model.safetensors',
    'tokenizer.json',
    'tokenizer_config.json',
    'generation_config.json',
  ]) {
    copyFileSync(`${STORIES}/${f}`, `${dir}/${f}`);
  }
  return dir;
}

async function loadError(dir: string): Promise<LlmboxError> {
  const err = await loadModel(dir).then(
    () => undefined,
    (e: unknown) => e,
  );
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
  it('float32 weights larger than the wasm heap are refused before any is uploaded, with the ways around it', async () => {
    await initEngine();
    const file = `${STORIES}/model.safetensors`;
    const config = parseConfig(JSON.parse(readFileSync(`${STORIES}/config.json`, 'utf8')));
    const raw = readSafetensors(file);
    const shapes = parameterShapes(config);
    // A heap one byte short of stories260K's float32 weights, the largest once more (uploaded, then transposed) and the headroom.
    const sizes = [...shapes.keys()].map((n) => (raw.get(n)?.data.length ?? 0) * 4);
    const fits = tf.memory().numBytes + sizes.reduce((a, b) => a + b) + Math.max(...sizes) + WASM_HEADROOM_BYTES;
    const small = () => refuseHeapOverflow(raw, shapes, new Map(), file, fits - 1);
    if (tf.getBackend() !== 'wasm') {
      // Only tfjs-wasm has a 32-bit heap.
      expect(small).not.toThrow();
      return;
    }
    const before = tf.memory().numTensors;
    const err = (() => {
      try {
        small();
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(LlmboxError);
    expect((err as LlmboxError).message).toMatch(
      /float32 weights of \d\.\d MiB do not fit the wasm backend's 25\d\.\d MiB heap/,
    );
    expect((err as LlmboxError).file).toBe(file);
    expect((err as LlmboxError).fix).toMatch(/--load-in-8bit.*native add-on.*--backend cpu/);
    expect(tf.memory().numTensors).toBe(before);
    expect(() => refuseHeapOverflow(raw, shapes, new Map(), file, fits)).not.toThrow();
    // A packed matrix is not on the heap: leaving the largest out fits one byte short.
    const largest = [...shapes.keys()][sizes.indexOf(Math.max(...sizes))];
    const packed = new Map([[largest, {} as PackedMatrix]]);
    expect(() => refuseHeapOverflow(raw, shapes, packed, file, fits - 1)).not.toThrow();
  });

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
    writeFileSync(`${dir}/config.json`, JSON.stringify({ ...cfg, model_type: 'falcon' }));
    const e = await loadError(dir);
    expect(e.field).toBe('model_type');
    expect(e.message).toMatch(/falcon/);
    expect(e.fix).toMatch(/supports llama, mistral, qwen2, qwen3, phi3, gemma, gemma2, gpt_neox, gpt2$/);
    // A LLaMA config relabelled gpt2 is read with GPT-2's field names, and the first one missing is named.
    writeFileSync(`${dir}/config.json`, JSON.stringify({ ...cfg, model_type: 'gpt2' }));
    expect((await loadError(dir)).field).toBe('n_head');
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

describe('weights and configs that would load as believable wrong models are refused', () => {
  const weights = (dir: string) => readSafetensors(`${dir}/model.safetensors`);
  const config = (dir: string) => JSON.parse(readFileSync(`${dir}/config.json`, 'utf8'));

  it('a dtype label that disagrees with the byte length, overlapping data_offsets', () => {
    const file = `${tmp()}/w.safetensors`;
    rawSafetensors(file, { w: { dtype: 'F16', shape: [4], data_offsets: [0, 16] } }, new Uint8Array(16));
    expect(() => readSafetensors(file)).toThrow(
      /tensor w has shape \[4\] \(8 bytes of F16\) but data_offsets \[0, 16\]/,
    );
    rawSafetensors(
      file,
      { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } },
      new Uint8Array(12),
    );
    expect(() => readSafetensors(file)).toThrow(/tensors a \[0, 8\] and b \[4, 12\] overlap/);
    rawSafetensors(file, { a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 6] } }, new Uint8Array(6));
    expect(() => readSafetensors(file)).toThrow(/corrupt safetensors/);
  });

  it('shard paths that leave the model folder', async () => {
    const dir = copyStories();
    const names = [...weights(dir).keys()];
    writeFileSync(
      `${dir}/model.safetensors.index.json`,
      JSON.stringify({ weight_map: Object.fromEntries(names.map((n) => [n, '../elsewhere/model.safetensors'])) }),
    );
    const e = await loadError(dir);
    expect(e.message).toMatch(/shard path "..\/elsewhere\/model.safetensors" leaves the model folder/);
    expect(e.file).toBe(`${dir}/model.safetensors.index.json`);
  });

  it('tensors the config does not account for (5 layers of weights for a config of 4), missing tensors, NaN weights', async () => {
    const dir = copyStories();
    const cfg = config(dir);
    writeFileSync(`${dir}/config.json`, JSON.stringify({ ...cfg, num_hidden_layers: cfg.num_hidden_layers - 1 }));
    const extra = await loadError(dir);
    expect(extra.message).toMatch(
      new RegExp(
        `tensor\\(s\\) the config does not account for.*layer\\(s\\) ${cfg.num_hidden_layers - 1} of a config with num_hidden_layers ${cfg.num_hidden_layers - 1}`,
      ),
    );
    expect(extra.fix).toMatch(/config.json that belongs/);
    writeFileSync(`${dir}/config.json`, JSON.stringify(cfg));
    const w = weights(dir);
    const name = 'model.layers.1.self_attn.q_proj.weight';
    const bad = new Map(w);
    const data = Float32Array.from(w.get(name)!.data);
    data[7] = NaN;
    data[9] = Infinity;
    bad.set(name, { shape: w.get(name)!.shape, data });
    writeSafetensors(`${dir}/model.safetensors`, bad);
    const nan = await loadError(dir);
    expect(nan.message).toBe(
      `tensor ${name} holds 2 NaN/Inf value(s) (first at element 7)\n  file: ${dir}/model.safetensors\n  field: ${name}\n  fix: the weights are damaged (a diverged run or a bad conversion): use another checkpoint`,
    );
    const missing = new Map(w);
    missing.delete(name);
    writeSafetensors(`${dir}/model.safetensors`, missing);
    expect((await loadError(dir)).message).toMatch(new RegExp(`missing tensor ${name.replace(/\./g, '\\.')}`));
    // A tied head stored beside the embeddings must equal them.
    const tied = new Map(w);
    tied.set('lm_head.weight', {
      shape: w.get('model.embed_tokens.weight')!.shape,
      data: w.get('model.embed_tokens.weight')!.data.map((v) => v + 1) as Float32Array,
    });
    writeSafetensors(`${dir}/model.safetensors`, tied);
    writeFileSync(`${dir}/config.json`, JSON.stringify({ ...cfg, tie_word_embeddings: true }));
    expect((await loadError(dir)).field).toBe('tie_word_embeddings');
  });

  it('config.json that is null, an array or a folder; a bad sliding_window; special token ids outside the vocabulary', async () => {
    const dir = copyStories();
    const cfg = config(dir);
    for (const [body, msg] of [
      ['null', /must be a JSON object, got null/],
      ['[1, 2]', /got an array/],
    ] as const) {
      writeFileSync(`${dir}/config.json`, body);
      expect((await loadError(dir)).message).toMatch(msg);
    }
    rmSync(`${dir}/config.json`);
    mkdirSync(`${dir}/config.json`);
    expect((await loadError(dir)).message).toMatch(/config.json is a directory/);
    rmSync(`${dir}/config.json`, { recursive: true });
    const cases: [Record<string, unknown>, string][] = [
      [{ model_type: 'mistral', sliding_window: 0 }, 'sliding_window'],
      [{ model_type: 'mistral', sliding_window: '4096' }, 'sliding_window'],
      [{ eos_token_id: cfg.vocab_size + 5 }, 'eos_token_id'],
      [{ eos_token_id: '2' }, 'eos_token_id'],
      [{ bos_token_id: -1 }, 'bos_token_id'],
    ];
    for (const [patch, field] of cases) {
      writeFileSync(`${dir}/config.json`, JSON.stringify({ ...cfg, ...patch }));
      const e = await loadError(dir);
      expect(e.field, JSON.stringify(patch)).toBe(field);
    }
  });

  it('a corrupt tokenizer.json is named as such', async () => {
    const dir = copyStories();
    writeFileSync(`${dir}/tokenizer.json`, '{}');
    const e = await loadError(dir);
    expect(e.message).toMatch(/^not a valid Hugging Face tokenizer/);
    expect(e.file).toBe(`${dir}/tokenizer.json`);
    writeFileSync(`${dir}/tokenizer.json`, '{"model": ');
    expect((await loadError(dir)).message).toMatch(/not valid JSON/);
  });

  it('non-finite logits at run time stop scoring and generation', async () => {
    await initEngine();
    // Finite weights whose products overflow float32.
    const model = randomModel(TINY_CONFIGS['qwen2 attention bias, tied'], { seed: 1, std: 1e30 });
    await expect(nextTokenLogprobs(model, [1, 2, 3])).rejects.toThrow(/non-finite logits/);
    const lm = { dir: 'overflow', model, tokenizer: null, generation: { eosTokenIds: [] } };
    await expect(generate(lm, [[1, 2, 3]], { maxNewTokens: 2 })).rejects.toThrow(/non-finite logits while generating/);
  });

  it('a prompt longer than max_position_embeddings is an error, not an empty generation', async () => {
    const dir = copyStories();
    writeFileSync(`${dir}/config.json`, JSON.stringify({ ...config(dir), max_position_embeddings: 8 }));
    const lm = await loadModel(dir);
    const err = await (async () => {
      try {
        await generate(lm, ['Once upon a time there was a little girl named Lily'], { maxNewTokens: 4 });
      } catch (e) {
        return e as LlmboxError;
      }
    })();
    expect(err).toBeInstanceOf(LlmboxError);
    expect(err!.message).toMatch(/more than the model's 8 positions/);
    expect(err!.field).toBe('max_position_embeddings');
    await expect(
      nextTokenLogprobs(
        lm.model,
        Array.from({ length: 9 }, () => 403),
      ),
    ).rejects.toThrow(/9 tokens are more than the model's 8 positions/);
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
    rawSafetensors(
      file,
      {
        a: { dtype: 'F16', shape: [4], data_offsets: [0, 8] },
        b: { dtype: 'BF16', shape: [3], data_offsets: [8, 14] },
      },
      body,
    );
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
    const shard = (part: string[], file: string) =>
      writeSafetensors(`${dir}/${file}`, new Map(part.map((n) => [n, all.get(n)!])));
    shard(names.slice(0, 10), 'model-00001-of-00002.safetensors');
    shard(names.slice(10), 'model-00002-of-00002.safetensors');
    const weightMap = Object.fromEntries(
      names.map((n, i) => [n, i < 10 ? 'model-00001-of-00002.safetensors' : 'model-00002-of-00002.safetensors']),
    );
    writeFileSync(`${dir}/model.safetensors.index.json`, JSON.stringify({ weight_map: weightMap }));
    rmSync(`${dir}/model.safetensors`);
    const back = await loadModel(dir);
    for (const [n, t] of model.params) expect(back.model.params.get(n)!.dataSync()).toEqual(t.dataSync());
  });
});
