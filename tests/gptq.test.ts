import { spawnSync } from 'node:child_process';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { initEngine, tf } from '../lib/engine/index.js';
import { packedMatMul } from '../lib/engine/ops.js';
import { fromHalf, Q4_Z } from '../lib/models/ggml-quants.js';
import { LINEARS, LlamaModel } from '../lib/models/llama.js';
import { loadModel } from '../lib/models/load.js';
import { decodedInInputOrder, packedFromBytes } from '../lib/models/packed.js';
import { readSafetensors } from '../lib/models/safetensors.js';
import { addLora, mergeLora } from '../lib/train/lora.js';
import { seededRandom } from '../lib/util/random.js';
import { gptqLinear, gptqTensors, writeTypedSafetensors, type GptqOptions, type StoredTensor } from './helpers/gptq.js';
import { STORIES, tmp } from './helpers/models.js';
import { roundedRows } from './helpers/rounding.js';

const BIN = resolve(import.meta.dirname, '..', 'bin', 'llmbox.js');
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const normal = (n: number, seed: number, std = 0.05) => {
  const r = seededRandom(seed);
  return Float32Array.from({ length: n }, () => std * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r()));
};
function shuffled(n: number, seed: number): number[] {
  const r = seededRandom(seed);
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

const TINY = {
  model_type: 'llama',
  vocab_size: 50,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  tie_word_embeddings: false,
};

const SHAPES: Record<string, [number, number]> = {
  'self_attn.q_proj': [64, 64],
  'self_attn.k_proj': [32, 64],
  'self_attn.v_proj': [32, 64],
  'self_attn.o_proj': [64, 64],
  'mlp.gate_proj': [128, 64],
  'mlp.up_proj': [128, 64],
  'mlp.down_proj': [64, 128],
};

interface Written {
  dir: string;
  /** Each GPTQ linear's weights as the checkpoint means them, [out, in]. */
  dequantized: Map<string, Float64Array>;
}

/** A tiny LLaMA as a GPTQ checkpoint (float embeddings, norms and head), in transformers' layout unless `autoGptq`. */
function writeGptqModel(
  o: GptqOptions & { actOrder?: boolean; autoGptq?: boolean },
  edit?: (t: Map<string, StoredTensor>) => void,
): Written {
  const dir = tmp();
  const tensors = new Map<string, StoredTensor>();
  const dequantized = new Map<string, Float64Array>();
  let seed = 1;
  const float = (name: string, shape: number[], data?: Float32Array) =>
    tensors.set(name, { dtype: 'F32', shape, data: data ?? normal(shape[0] * (shape[1] ?? 1), seed++, 0.5) });
  float('model.embed_tokens.weight', [50, 64]);
  float('lm_head.weight', [50, 64]);
  float('model.norm.weight', [64], new Float32Array(64).fill(1));
  for (let l = 0; l < 2; l++) {
    float(`model.layers.${l}.input_layernorm.weight`, [64], new Float32Array(64).fill(1));
    float(`model.layers.${l}.post_attention_layernorm.weight`, [64], new Float32Array(64).fill(1));
    for (const [p, [out, inF]] of Object.entries(SHAPES)) {
      const prefix = `model.layers.${l}.${p}`;
      const t = gptqLinear(normal(out * inF, seed++), out, inF, {
        ...o,
        order: o.actOrder ? shuffled(inF, seed++) : undefined,
      });
      for (const [n, v] of gptqTensors(prefix, t, out, inF)) tensors.set(n, v);
      dequantized.set(`${prefix}.weight`, t.dequantized);
    }
  }
  edit?.(tensors);
  const q = {
    quant_method: 'gptq',
    bits: 4,
    group_size: o.groupSize,
    desc_act: !!o.actOrder,
    sym: o.sym,
    checkpoint_format: o.format,
  };
  if (o.autoGptq) {
    writeTypedSafetensors(join(dir, 'gptq_model-4bit-32g.safetensors'), tensors);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(TINY));
    const { quant_method: _, ...rest } = q;
    writeFileSync(
      join(dir, 'quantize_config.json'),
      JSON.stringify({ ...rest, model_file_base_name: 'gptq_model-4bit-32g' }),
    );
  } else {
    writeTypedSafetensors(join(dir, 'model.safetensors'), tensors);
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...TINY, quantization_config: q }));
  }
  return { dir, dequantized };
}

const CASES: [string, GptqOptions & { actOrder?: boolean; autoGptq?: boolean }][] = [
  ['symmetric, groups of 32, AutoGPTQ format (zeros stored less one)', { groupSize: 32, sym: true, format: 'gptq' }],
  ['asymmetric, groups of 32, act-order, gptq_v2', { groupSize: 32, sym: false, format: 'gptq_v2', actOrder: true }],
  [
    'asymmetric, groups of 64, act-order, zeros less one',
    { groupSize: 64, sym: false, format: 'gptq', actOrder: true },
  ],
  [
    'asymmetric, one group per row, act-order, zeros less one',
    { groupSize: -1, sym: false, format: 'gptq', actOrder: true },
  ],
  [
    'AutoGPTQ folder: quantize_config.json and model_file_base_name',
    { groupSize: 32, sym: false, format: 'gptq', autoGptq: true },
  ],
];

describe('GPTQ checkpoints', () => {
  it.each(CASES)("%s: every linear loads as q4_z and means exactly the checkpoint's weights", async (_n, o) => {
    const w = writeGptqModel(o);
    const m = await loadModel(w.dir);
    expect(m.model.packed.size).toBe(2 * LINEARS.length);
    const raw = m.model.toRaw();
    for (const [name, ref] of w.dequantized) {
      const pk = m.model.packed.get(name)!;
      expect(pk.type).toBe(Q4_Z);
      // scale (q - zero) with an f16 scale and |q - zero| <= 16 is exact in float32.
      expect(Array.from(raw.get(name)!.data)).toEqual(Array.from(ref));
    }
    // Inputs are stored sorted by group where act-order shuffled them across more than one group.
    const shuffledGroups = Object.values(SHAPES).filter(
      ([, inF]) => o.actOrder && o.groupSize !== -1 && inF > o.groupSize,
    );
    expect([...m.model.packed.values()].filter((p) => p.inputOrder).length).toBe(2 * shuffledGroups.length);
    // 20 bytes per 32 weights, outside the heap; the heap holds the float embedding, head and norms.
    const linearWeights = [...w.dequantized.values()].reduce((n, d) => n + d.length, 0);
    expect(m.model.weightBytes()).toBe((linearWeights / 32) * 20 + 4 * (2 * 50 * 64 + 5 * 64));
    m.model.dispose();
  });

  it('logits are those of the float model of the same weights, up to the 8-bit input rounding', async () => {
    for (const actOrder of [false, true]) {
      const w = writeGptqModel({ groupSize: 32, sym: false, format: 'gptq', actOrder });
      const m = await loadModel(w.dir);
      const float = LlamaModel.fromRaw(m.model.config, m.model.toRaw());
      const ids = [[3, 17, 4, 41, 9, 22, 8, 30, 1, 12]];
      const logits = (x: LlamaModel) =>
        tf.tidy(() => x.logits(x.forward(ids).reshape([-1, 64]) as tf.Tensor2D).dataSync());
      const [lq, lf] = [logits(m.model), logits(float)];
      const scale = Math.max(...Array.from(lf, Math.abs));
      expect(maxDiff(lq, lf)).toBeLessThan(0.02 * scale);
      expect(maxDiff(lq, lf)).toBeGreaterThan(0); // the rounding is there: the q4_z path ran
      m.model.dispose();
      float.dispose();
    }
  });

  it('a q4_z product with an input order: x gathered, rounded per block, times the stored columns; dx = dy W', async () => {
    await initEngine();
    const [n, k] = [40, 96];
    const r = seededRandom(5);
    const bytes = new Uint8Array((n * k * 20) / 32);
    for (let b = 0; b < bytes.length; b += 20) {
      new DataView(bytes.buffer).setUint16(b, 0x2000 + Math.floor(r() * 0x800), true); // f16 in [2^-7, 2^-6)
      bytes[b + 2] = Math.floor(r() * 17);
      for (let j = 4; j < 20; j++) bytes[b + j] = Math.floor(r() * 256);
    }
    const order = Int32Array.from(shuffled(k, 7));
    const w = { ...packedFromBytes(bytes, Q4_Z, n, k), inputOrder: order };
    // A decode row, and blocks of rows (integer tiles with VNNI, else integer dots and BLAS panels).
    for (const rows of [1, 3, 9]) {
      const x = tf.tensor2d(normal(rows * k, 11, 1), [rows, k]);
      const logical = tf.tensor2d(decodedInInputOrder(w), [n, k]);
      const exact = tf.matMul(x, logical, false, true);
      const ours = packedMatMul(x, w);
      // Exactly: x's columns in the stored order, rounded as llama.cpp rounds, times the stored matrix.
      const xs = tf.gather(x, tf.tensor1d(order, 'int32'), 1).dataSync() as Float32Array;
      const ref = tf.matMul(tf.tensor2d(roundedRows(xs, k), [rows, k]), tf.tensor2d(w.decode(), [n, k]), false, true);
      expect(maxDiff(ours.dataSync(), ref.dataSync())).toBeLessThan(1e-5 * k);
      const s = Math.max(...Array.from(exact.dataSync(), Math.abs));
      expect(maxDiff(ours.dataSync(), exact.dataSync())).toBeLessThan(0.01 * s);
      expect(maxDiff(ours.dataSync(), exact.dataSync())).toBeGreaterThan(0);
      const dy = tf.tensor2d(normal(rows * n, 13, 1), [rows, n]);
      const dx = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(packedMatMul(v as tf.Tensor2D, w), dy)))(x);
      expect(maxDiff(dx.dataSync(), tf.matMul(dy, logical).dataSync())).toBeLessThan(1e-5 * n);
      tf.dispose([x, logical, exact, ours, ref, dy, dx]);
    }
  });

  it('LoRA trains on a GPTQ act-order base: gradients reach the first layer; merged, the model keeps its outputs', async () => {
    const w = writeGptqModel({ groupSize: 32, sym: false, format: 'gptq', actOrder: true });
    const m = await loadModel(w.dir);
    addLora(m.model, { rank: 2, targets: ['q_proj', 'down_proj'], seed: 1 });
    const ids = [[3, 17, 4, 41, 9, 22, 8]];
    const out = () => m.model.logits(m.model.forward(ids).reshape([-1, 64]) as tf.Tensor2D);
    const names = [...m.model.adapters.keys()];
    const originals = names.map((n) => m.model.adapters.get(n)!);
    const { grads } = tf.valueAndGrads((...ps: tf.Tensor[]) => {
      names.forEach((n, i) => m.model.adapters.set(n, ps[i]));
      return tf.mean(tf.square(out())) as tf.Scalar;
    })(originals);
    names.forEach((n, i) => m.model.adapters.set(n, originals[i]));
    for (const layer of ['self_attn.q_proj', 'mlp.down_proj']) {
      const g = grads[names.indexOf(`model.layers.0.${layer}.lora_B`)];
      const norm = tf.norm(g).dataSync()[0];
      expect(Number.isFinite(norm) && norm > 0, layer).toBe(true);
    }
    // A trained-looking adapter, then merged into float weights: the same function up to the input rounding.
    m.model.adapters.set('model.layers.0.mlp.down_proj.lora_B', tf.randomNormal([2, 64], 0, 0.05, 'float32', 3));
    const before = tf.tidy(() => out().dataSync());
    mergeLora(m.model);
    expect(m.model.packed.has('model.layers.0.mlp.down_proj.weight')).toBe(false);
    const after = tf.tidy(() => out().dataSync());
    expect(maxDiff(before, after)).toBeLessThan(0.02 * Math.max(...Array.from(after, Math.abs)));
    tf.dispose(grads);
    m.model.dispose();
  });

  it('stories260K with GPTQ attention: generates from the CLI, the text of its dequantized float model', async () => {
    const dir = tmp();
    const src = readSafetensors(join(STORIES, 'model.safetensors'));
    const tensors = new Map<string, StoredTensor>();
    for (const [name, t] of src) {
      const attn = /self_attn\.[qkvo]_proj\.weight$/.exec(name);
      if (!attn) {
        tensors.set(name, { dtype: 'F32', shape: t.shape, data: t.data as Float32Array });
        continue;
      }
      const [out, inF] = t.shape;
      const g = gptqLinear(t.data as Float32Array, out, inF, { groupSize: 32, sym: true, format: 'gptq' });
      for (const [n, v] of gptqTensors(name.replace(/\.weight$/, ''), g, out, inF)) tensors.set(n, v);
    }
    writeTypedSafetensors(join(dir, 'model.safetensors'), tensors);
    const config = JSON.parse((await import('node:fs')).readFileSync(join(STORIES, 'config.json'), 'utf8'));
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        ...config,
        quantization_config: { quant_method: 'gptq', bits: 4, group_size: 32, desc_act: false, sym: true },
      }),
    );
    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json'])
      copyFileSync(join(STORIES, f), join(dir, f));
    const run = (m: string) =>
      spawnSync(
        process.execPath,
        [BIN, 'generate', '-m', m, '-p', 'Once upon a time', '--max-new-tokens', '20', '--json'],
        {
          encoding: 'utf8',
        },
      );
    const r = run(dir);
    expect(r.status, r.stderr).toBe(0);
    // The same weights in float32, saved as an ordinary folder.
    const m = await loadModel(dir);
    expect([...m.model.packed.keys()].filter((k) => k.includes('layers.0.')).length).toBe(4);
    const floatDir = tmp();
    const { saveModel } = await import('../lib/models/load.js');
    saveModel(floatDir, LlamaModel.fromRaw(m.model.config, m.model.toRaw()), { tokenizerFrom: STORIES });
    copyFileSync(join(STORIES, 'generation_config.json'), join(floatDir, 'generation_config.json'));
    expect(JSON.parse(r.stdout).text).toBe(JSON.parse(run(floatDir).stdout).text);
    m.model.dispose();
  });

  const refusals: [string, Record<string, unknown>, RegExp][] = [
    ['bits 8', { bits: 8 }, /bits=8 is not supported[\s\S]*field: quantization_config\.bits/],
    ['AWQ', { quant_method: 'awq' }, /quant_method "awq" checkpoints are not supported/],
    [
      'bitsandbytes',
      { quant_method: 'bitsandbytes' },
      /fix: load the float checkpoint with --load-in-4bit --quant nf4/,
    ],
    ['a Marlin repack', { checkpoint_format: 'marlin' }, /checkpoint_format "marlin" is not supported/],
    ['groups of 16', { group_size: 16 }, /group_size 16 is not supported[\s\S]*multiple of 32/],
  ];
  it.each(refusals)('refuses %s, naming the field', async (_n, change, message) => {
    const w = writeGptqModel({ groupSize: 32, sym: true, format: 'gptq' });
    const cfg = JSON.parse((await import('node:fs')).readFileSync(join(w.dir, 'config.json'), 'utf8'));
    writeFileSync(
      join(w.dir, 'config.json'),
      JSON.stringify({ ...cfg, quantization_config: { ...cfg.quantization_config, ...change } }),
    );
    await expect(loadModel(w.dir)).rejects.toThrow(message);
  });

  it('refuses damaged tensors: act-order without g_idx, non-f16 scales, groups split across blocks, an extra layer', async () => {
    const q = 'model.layers.0.self_attn.q_proj';
    const broken: [(t: Map<string, StoredTensor>) => void, boolean, RegExp][] = [
      [(t) => t.delete(`${q}.g_idx`), true, /has no g_idx, which act-order \(desc_act\) checkpoints need/],
      [
        (t) => {
          const s = t.get(`${q}.scales`)!;
          t.set(`${q}.scales`, {
            dtype: 'F32',
            shape: s.shape,
            data: Float32Array.from(s.data as Uint16Array, (h, i) => fromHalf(h) * (i % 2 ? 1 + 2 ** -14 : 1)),
          });
        },
        false,
        /scales holds .*, not a float16 value/,
      ],
      [
        (t) => {
          (t.get(`${q}.g_idx`)!.data as Int32Array)[0] = 1; // groups of 31 and 33: a block holds both
        },
        false,
        /g_idx puts inputs of different groups in one block of 32/,
      ],
      [
        (t) => {
          for (const s of ['qweight', 'qzeros', 'scales', 'g_idx'])
            t.set(`model.layers.2.self_attn.q_proj.${s}`, t.get(`${q}.${s}`)!);
        },
        false,
        /unexpected GPTQ tensor model\.layers\.2\.self_attn\.q_proj\.qweight/,
      ],
      [
        (t) => t.delete(`${q}.qzeros`),
        false,
        /has qweight but no qzeros[\s\S]*field: model\.layers\.0\.self_attn\.q_proj\.qzeros/,
      ],
    ];
    for (const [edit, actOrder, message] of broken) {
      const w = writeGptqModel({ groupSize: 32, sym: true, format: 'gptq', actOrder }, edit);
      await expect(loadModel(w.dir)).rejects.toThrow(message);
    }
  });
});
