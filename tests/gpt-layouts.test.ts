import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { initEngine, tf } from '../lib/engine/index.js';
import { parseConfig, toHfConfig } from '../lib/models/config.js';
import { loadModel, randomModel, saveModel } from '../lib/models/load.js';
import type { LlamaModel } from '../lib/models/llama.js';
import { readModelWeights, writeSafetensors, type RawTensor } from '../lib/models/safetensors.js';
import { addLora, dropLora, loadAdapter, loraLayers, saveAdapter } from '../lib/train/lora.js';
import { llmboxErrorOf, TINY_CONFIGS, tmp } from './helpers/models.js';

const NEOX = TINY_CONFIGS['gpt_neox partial rotary, parallel residual, exact gelu, LayerNorm'];
const GPT2 = TINY_CONFIGS['gpt2 learned positions, Conv1D, fused c_attn, tied'];

function logitsOf(model: LlamaModel, ids: number[]): Float32Array {
  return tf.tidy(
    () =>
      model
        .logits(model.forward([ids]).reshape([ids.length, model.config.hiddenSize]) as tf.Tensor2D)
        .dataSync() as Float32Array,
  );
}

/** A model folder holding `tensors` under the config of `model`. */
function folderWith(model: LlamaModel, tensors: Map<string, RawTensor>): string {
  const dir = tmp();
  writeSafetensors(`${dir}/model.safetensors`, tensors);
  writeFileSync(`${dir}/config.json`, JSON.stringify(toHfConfig(model.config)));
  return dir;
}

const ids = [3, 17, 9, 1, 30, 22, 5];

describe('GPT-NeoX checkpoints', () => {
  it('are written as transformers writes them: fused per-head query_key_value, embed_in/embed_out, final_layer_norm', async () => {
    await initEngine();
    const model = randomModel(NEOX, { seed: 1, std: 0.2 });
    const dir = tmp();
    saveModel(dir, model);
    const w = readModelWeights(dir);
    expect(w.get('gpt_neox.layers.0.attention.query_key_value.weight')!.shape).toEqual([96, 32]);
    expect(w.get('gpt_neox.layers.1.attention.query_key_value.bias')!.shape).toEqual([96]);
    expect(w.get('gpt_neox.layers.0.mlp.dense_h_to_4h.weight')!.shape).toEqual([48, 32]);
    expect(w.get('gpt_neox.final_layer_norm.bias')!.shape).toEqual([32]);
    expect(w.get('embed_out.weight')!.shape).toEqual([53, 32]);
    expect([...w.keys()].filter((n) => n.startsWith('model.'))).toEqual([]);
    // Head 1's query rows sit right after head 0's q, k and v rows (8 each).
    const q = model.toRaw().get('gpt_neox.layers.0.attention.query_key_value.weight')!.data;
    const qProj = tf.transpose(model.params.get('model.layers.0.self_attn.q_proj.weight')!).dataSync();
    expect(Array.from(q.slice(24 * 32, 25 * 32))).toEqual(Array.from(qProj.slice(8 * 32, 9 * 32)));
    expect(parseConfig(toHfConfig(model.config))).toEqual(model.config);
    model.dispose();
  });

  it('load with the causal-mask and rotary buffers older exports saved beside the weights', async () => {
    await initEngine();
    const model = randomModel(NEOX, { seed: 2, std: 0.2 });
    const raw = model.toRaw();
    for (let l = 0; l < 2; l++) {
      raw.set(`gpt_neox.layers.${l}.attention.bias`, { shape: [1, 1, 4, 4], data: new Float32Array(16).fill(1) });
      raw.set(`gpt_neox.layers.${l}.attention.masked_bias`, { shape: [], data: new Float32Array([-1e9]) });
      raw.set(`gpt_neox.layers.${l}.attention.rotary_emb.inv_freq`, { shape: [2], data: new Float32Array([1, 0.01]) });
    }
    const back = await loadModel(folderWith(model, raw));
    expect(Array.from(logitsOf(back.model, ids))).toEqual(Array.from(logitsOf(model, ids)));
    model.dispose();
    back.model.dispose();
  });

  it('refuse a rotary fraction that leaves an odd number of dimensions to rotate, naming the field', () => {
    const e = llmboxErrorOf(() => parseConfig({ ...NEOX, rotary_pct: 0.375 }));
    expect(e.field).toBe('rotary_pct');
    expect(e.message).toMatch(/3 rotary dimensions of a 8-wide head/);
  });
});

describe('GPT-2 checkpoints', () => {
  it('are written as GPT2LMHeadModel writes them: Conv1D [in, out] weights, c_attn = q|k|v columns, wpe', async () => {
    await initEngine();
    const model = randomModel(GPT2, { seed: 3, std: 0.2 });
    const dir = tmp();
    saveModel(dir, model);
    const w = readModelWeights(dir);
    expect(w.get('transformer.h.0.attn.c_attn.weight')!.shape).toEqual([32, 96]);
    expect(w.get('transformer.h.0.mlp.c_fc.weight')!.shape).toEqual([32, 128]);
    expect(w.get('transformer.h.1.mlp.c_proj.weight')!.shape).toEqual([128, 32]);
    expect(w.get('transformer.wpe.weight')!.shape).toEqual([64, 32]);
    expect(w.get('transformer.ln_f.bias')!.shape).toEqual([32]);
    // c_attn's column 32 + j is k_proj's output j: the model holds k_proj as [in, out].
    const cAttn = w.get('transformer.h.0.attn.c_attn.weight')!.data;
    const k = model.params.get('model.layers.0.self_attn.k_proj.weight')!.arraySync() as number[][];
    expect(Array.from({ length: 32 }, (_, i) => cAttn[i * 96 + 32 + 5])).toEqual(k.map((row) => Math.fround(row[5])));
    expect(parseConfig(toHfConfig(model.config))).toEqual(model.config);
    model.dispose();
  });

  it("load GPT2Model's own files too: names without transformer., mask buffers, no lm_head", async () => {
    await initEngine();
    const model = randomModel(GPT2, { seed: 4, std: 0.2 });
    const bare = new Map<string, RawTensor>();
    for (const [name, t] of model.toRaw())
      if (name !== 'lm_head.weight') bare.set(name.replace(/^transformer\./, ''), t);
    bare.set('h.0.attn.bias', { shape: [1, 1, 4, 4], data: new Float32Array(16) });
    bare.set('h.1.attn.masked_bias', { shape: [], data: new Float32Array([-1e4]) });
    const back = await loadModel(folderWith(model, bare));
    expect(Array.from(logitsOf(back.model, ids))).toEqual(Array.from(logitsOf(model, ids)));
    back.model.dispose();
    // A tensor neither layout knows is refused, by name.
    bare.set('h.1.attn.c_extra.weight', { shape: [2], data: new Float32Array(2) });
    const dir = folderWith(model, bare);
    await expect(loadModel(dir)).rejects.toThrow(/h\.1\.attn\.c_extra\.weight/);
    model.dispose();
  });

  it('refuses positions past its learned table instead of reading past it', async () => {
    await initEngine();
    const model = randomModel({ ...GPT2, n_positions: 8 }, { seed: 5 });
    expect(() => model.forward([[1, 2, 3, 4, 5, 6, 7, 8, 9]])).toThrow(
      /position 8 is past the model's 8 learned positions/,
    );
    expect(() => model.forward([[1, 2, 3, 4, 5, 6, 7, 8]])).not.toThrow();
    model.dispose();
  });

  it('refuses the attention variants llmbox does not compute, naming the field', () => {
    expect(llmboxErrorOf(() => parseConfig({ ...GPT2, scale_attn_by_inverse_layer_idx: true })).field).toBe(
      'scale_attn_by_inverse_layer_idx',
    );
    expect(llmboxErrorOf(() => parseConfig({ ...GPT2, activation_function: 'relu' })).field).toBe(
      'activation_function',
    );
  });

  it('--load-in-8bit packs the attention and feed-forward weights (their checkpoint names are not the model linears)', async () => {
    await initEngine();
    const model = randomModel(GPT2, { seed: 6, std: 0.2 });
    const dir = tmp();
    saveModel(dir, model);
    const q8 = await loadModel(dir, { quantize: 'q8_0' });
    expect([...q8.model.packed.keys()].sort()).toEqual(
      [0, 1]
        .flatMap((l) =>
          [
            'self_attn.q_proj',
            'self_attn.k_proj',
            'self_attn.v_proj',
            'self_attn.o_proj',
            'mlp.up_proj',
            'mlp.down_proj',
          ].map((p) => `model.layers.${l}.${p}.weight`),
        )
        .sort(),
    );
    const a = logitsOf(model, ids),
      b = logitsOf(q8.model, ids);
    const worst = a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
    expect(worst).toBeGreaterThan(0);
    // q8_0 keeps about 8 bits per weight: on these tiny random models (every TINY_CONFIG measured) logits
    // move by 1-7% of their range; a mispacked matrix moves them by all of it.
    const range = a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(worst).toBeLessThan(0.05 * range);
    model.dispose();
    q8.model.dispose();
  });

  it('LoRA all-linear covers the linears GPT-2 has; a gate_proj target is refused', async () => {
    await initEngine();
    const model = randomModel(GPT2, { seed: 7 });
    expect(loraLayers(model, ['all-linear'])).toHaveLength(2 * 6);
    // Saved and loaded back: the adapter names the layers the model has.
    addLora(model, { rank: 2, targets: ['all-linear'], seed: 1 });
    const dir = tmp();
    saveAdapter(dir, model);
    const fresh = randomModel(GPT2, { seed: 7 });
    loadAdapter(dir, fresh);
    expect([...fresh.adapters.keys()].sort()).toEqual([...model.adapters.keys()].sort());
    for (const [name, t] of model.adapters)
      expect(Array.from(fresh.adapters.get(name)!.dataSync())).toEqual(Array.from(t.dataSync()));
    fresh.dispose();
    dropLora(model);
    expect(llmboxErrorOf(() => addLora(model, { rank: 2, targets: ['gate_proj'] })).message).toMatch(
      /no gate_proj layers/,
    );
    model.dispose();
  });
});
