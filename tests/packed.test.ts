import { spawnSync } from 'node:child_process';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { initEngine, nativeAddon, tf } from '../lib/engine/index.js';
import { packedMatMul } from '../lib/engine/ops.js';
import { loadNative, allocWeightBytes } from '../lib/engine/native.js';
import { generate } from '../lib/models/generate.js';
import { GGML } from '../lib/models/gguf-file.js';
import { readGgufModel, writeGgufModel } from '../lib/models/gguf.js';
import { LINEARS, LlamaModel } from '../lib/models/llama.js';
import { loadModel, type LoadedModel } from '../lib/models/load.js';
import { packedFromBytes, PACK_TYPES } from '../lib/models/packed.js';
import { decodeGgml, encodeGgml } from '../lib/models/ggml-quants.js';
import {
  readModelWeights,
  writeSafetensors,
  writeSafetensorsFrom,
  type RawTensor,
  type TensorSource,
} from '../lib/models/safetensors.js';
import { parseConfig } from '../lib/models/config.js';
import { addLora } from '../lib/train/lora.js';
import { seededRandom } from '../lib/util/random.js';
import { STORIES, tmp } from './helpers/models.js';
import { roundedRows } from './helpers/rounding.js';

const BIN = resolve(import.meta.dirname, '..', 'bin', 'llmbox.js');
const random = (n: number, seed: number) => {
  const r = seededRandom(seed);
  return Float32Array.from({ length: n }, () => (r() - 0.5) * 2);
};
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

/**
 * stories260K written as a bf16 or f16 folder (every tensor in that dtype, as transformers saves a
 * half-precision model), and the same values widened to float32 in a folder of their own.
 */
function halfFolder(dtype: 'BF16' | 'F16', edit?: (name: string, bytes: Uint8Array) => void) {
  const code = dtype === 'BF16' ? GGML.BF16 : GGML.F16;
  const src = readModelWeights(STORIES);
  const [dir, widened] = [tmp(), tmp()];
  const half = new Map<string, TensorSource>();
  const float = new Map<string, RawTensor>();
  for (const [name, t] of src) {
    const bytes = encodeGgml(code, t.data as Float32Array);
    float.set(name, { shape: t.shape, data: decodeGgml(code, bytes, t.data.length) });
    edit?.(name, bytes);
    half.set(name, { shape: t.shape, dtype, chunks: () => [bytes] });
  }
  writeSafetensorsFrom(join(dir, 'model.safetensors'), half);
  writeSafetensors(join(widened, 'model.safetensors'), float);
  for (const d of [dir, widened])
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json'])
      copyFileSync(join(STORIES, f), join(d, f));
  return { dir, widened };
}

describe('matrices held outside the heap in ggml types', () => {
  it.each(Object.entries(PACK_TYPES))(
    '%s: x W^T equals the product with W decoded (x rounded for the block types), for decode rows and prefill blocks',
    async (_name, type) => {
      await initEngine();
      const rounds = type === GGML.Q8_0 || type === GGML.Q4_0 || type === GGML.Q4_1;
      for (const [rows, n, k] of [
        [1, 5, 64],
        [7, 96, 32],
        [3, 130, 96],
        [9, 40, 64],
        // Tiles of 16 or 8 weight rows (int8_gemm on AVX-512 or AVX2): whole and part tiles, 1-3 rows left
        // over after groups of 4, and a product large enough to be split over threads.
        [33, 70, 256],
        [20, 1000, 256],
        // A decode row split over threads; rows that are not whole blocks of 32 (float types only).
        [1, 1100, 4096],
        // Decode rows with an odd number of blocks (AVX-512 takes blocks in pairs): one block alone,
        // and 65 a row in a product split over threads.
        [2, 17, 32],
        [1, 2100, 2080],
        ...(type === GGML.F16 || type === GGML.BF16
          ? [
              [1, 33, 100],
              [9, 33, 100],
            ]
          : []),
      ]) {
        const w = packedFromBytes(encodeGgml(type, random(n * k, n + k)), type, n, k);
        const x = tf.tensor2d(random(rows * k, rows), [rows, k]);
        const ours = packedMatMul(x, w);
        const input = rounds ? tf.tensor2d(roundedRows(x.dataSync() as Float32Array, k), [rows, k]) : x;
        const ref = tf.matMul(input, tf.tensor2d(w.decode(), [n, k]), false, true);
        expect(ours.shape).toEqual([rows, n]);
        expect(maxDiff(ours.dataSync(), ref.dataSync())).toBeLessThan(1e-5 * k);
        // What the rounding costs against the float input: about 0.3% of a product's scale.
        const exact = tf.matMul(x, tf.tensor2d(w.decode(), [n, k]), false, true);
        const scale = Math.max(...Array.from(exact.dataSync(), Math.abs));
        if (rounds) expect(maxDiff(ours.dataSync(), exact.dataSync())).toBeLessThan(0.01 * scale);
        // The gradient is for x only: dy W.
        const dy = tf.tensor2d(random(rows * n, 9), [rows, n]);
        const dx = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(packedMatMul(v as tf.Tensor2D, w), dy)))(x);
        expect(maxDiff(dx.dataSync(), tf.matMul(dy, tf.tensor2d(w.decode(), [n, k])).dataSync())).toBeLessThan(
          1e-5 * n,
        );
        tf.dispose([x, ours, input, ref, exact, dy, dx]);
      }
    },
  );

  it.skipIf(!loadNative().addon).each(['q8_0', 'q4_0', 'q4_1'] as const)(
    '%s: the add-on quantizes f32, f16 and bf16 to the bytes encodeGgml writes (ties, zeros of both signs, overflow)',
    (name) => {
      const code = PACK_TYPES[name];
      // Random blocks, then blocks made to hit the edges of the reference arithmetic.
      const special = [
        Array(32).fill(0),
        Array.from({ length: 32 }, (_, j) => (j % 2 ? -0 : 0)),
        Array.from({ length: 32 }, (_, j) => (j === 0 ? -0 : 0)),
        [127, 2.5, -2.5, 0.5, -0.5, 1.5, -1.5, ...Array(25).fill(3)],
        [-8, ...Array.from({ length: 31 }, (_, j) => j / 2 - 7.5)],
        Array.from({ length: 32 }, (_, j) => (j - 16) * 1e-8),
        Array.from({ length: 32 }, (_, j) => (j % 3 ? 1e5 : -1e5)),
        Array.from({ length: 32 }, (_, j) => 65504 - j),
      ].flat();
      const values = Float32Array.from([...random(32 * 3000, 11).map((v) => v * 3), ...special]);
      const addon = loadNative().addon!;
      for (const from of [GGML.F32, GGML.F16, GGML.BF16]) {
        // 1e5 overflows q4_1's f16 minimum from f32 and bf16; as f16 it would be infinite (refused at load).
        const stored = encodeGgml(
          from,
          from === GGML.F16 ? values.map((v) => Math.min(6e4, Math.max(-6e4, v))) : values,
        );
        const reference = encodeGgml(code, decodeGgml(from, stored, values.length));
        const ours = new Uint8Array(reference.length);
        addon.quantizeRows(stored, from, ours, code, values.length);
        const first = ours.findIndex((b, i) => b !== reference[i]);
        expect(first).toBe(-1);
      }
      expect(() => addon.quantizeRows(new Uint8Array(128), GGML.F32, new Uint8Array(33), code, 32)).toThrow(
        /do not match/,
      );
    },
  );

  it.each(['f16', 'bf16'] as const)(
    '%s: products of 1 to 7 rows (dotted without storing the decoded row) give the bits of each row alone',
    async (name) => {
      await initEngine();
      // 5000: one row is dotted with 4 weight rows at once, the input taken in chunks (rows over 4096).
      for (const k of [4096, 5000, 100]) {
        const n = 301; // odd: the last weight row has no pair (nor a group of 4)
        const w = packedFromBytes(encodeGgml(PACK_TYPES[name], random(n * k, 5)), PACK_TYPES[name], n, k);
        const x = tf.tensor2d(random(7 * k, 6), [7, k]);
        // The last row of each product, of x's last `rows` rows.
        const last = (rows: number) =>
          tf.tidy(() =>
            Array.from(
              packedMatMul(tf.slice(x, [7 - rows, 0], [rows, k]), w)
                .dataSync()
                .subarray((rows - 1) * n),
            ),
          );
        const alone = last(1);
        // 1 row and a few (fused in registers), and 4-7 on AVX2 (the row decoded, then dot_f32).
        for (const rows of [2, 3, 5, 7]) expect(last(rows)).toEqual(alone);
        x.dispose();
      }
    },
  );

  it.each(['q8_0', 'q4_0', 'q4_1'] as const)(
    '%s: weights and inputs at the ends of their ranges (int8 -128, nibbles 15, inputs +-127) multiply exactly',
    async (name) => {
      await initEngine();
      const type = PACK_TYPES[name];
      const [n, k] = [40, 256];
      const bytes = encodeGgml(type, random(n * k, 11));
      // Every value byte at its extreme: the int16 pair sums of the AVX2 tiles are then at their largest.
      const block = bytes.length / ((n * k) / 32),
        at = name === 'q4_1' ? 4 : 2;
      for (let b = 0; b < bytes.length; b += block) bytes.fill(name === 'q8_0' ? 0x80 : 0xff, b + at, b + block);
      const w = packedFromBytes(bytes, type, n, k);
      // Inputs alternating +-1 round to +-127 in every block.
      for (const rows of [1, 4, 9]) {
        const x = tf.tensor2d(
          Float32Array.from({ length: rows * k }, (_, i) => (i % 3 === 0 ? -1 : 1)),
          [rows, k],
        );
        const ref = tf.matMul(x, tf.tensor2d(w.decode(), [n, k]), false, true);
        const ours = packedMatMul(x, w);
        expect(maxDiff(ours.dataSync(), ref.dataSync())).toBeLessThan(1e-5 * k);
        tf.dispose([x, ref, ours]);
      }
    },
  );

  it.skipIf(!loadNative().addon)('weight buffers from the add-on are zeroed, writable and their exact size', () => {
    const addon = loadNative().addon!;
    for (const bytes of [1, 4097, (2 << 20) + 3, 5 << 20]) {
      const b = new Uint8Array(addon.allocWeights(bytes));
      expect(b.byteLength).toBe(bytes);
      expect(b.every((v) => v === 0)).toBe(true);
      b.fill(7);
      expect(b[0] + b[bytes - 1]).toBe(14);
    }
    // Large requests come from it; below one huge page they are ordinary buffers.
    expect(allocWeightBytes(3 << 20).byteLength).toBe(3 << 20);
    expect(allocWeightBytes(100).byteLength).toBe(100);
    expect(() => addon.allocWeights(0)).toThrow(/positive number of bytes/);
  });

  it.skipIf(!loadNative().addon)('the add-on finds the first NaN or Inf of stored values, wherever it lies', () => {
    const addon = loadNative().addon!;
    // Over 4M values the scan is split into tasks: bad values at task and stretch edges, and more than one.
    const n = (4 << 20) + 4099;
    const kinds = [
      { type: 0, width: 4, bad: [0x7fc00000, 0x7f800000, 0xff800000], fine: [0x3f800000, 0x7f7fffff, 0x80000001] },
      { type: 1, width: 2, bad: [0x7e00, 0x7c00, 0xfc00], fine: [0x3c00, 0x7bff, 0x8001] },
      { type: 30, width: 2, bad: [0x7fc0, 0x7f80, 0xff80], fine: [0x3f80, 0x7f7f, 0x8001] },
    ];
    for (const { type, width, bad, fine } of kinds) {
      const values = width === 4 ? new Uint32Array(n) : new Uint16Array(n);
      for (let i = 0; i < n; i++) values[i] = fine[i % fine.length];
      const bytes = new Uint8Array(values.buffer);
      expect(addon.firstNonFinite(bytes, type)).toBe(-1);
      for (const at of [n - 1, (n / 3) | 0, 4096, 4095, 0]) {
        values[at] = bad[at % bad.length];
        expect(addon.firstNonFinite(bytes, type), `type ${type} at ${at}`).toBe(at);
      }
      expect(() => addon.firstNonFinite(bytes.subarray(1, 1 + 2 * width), type)).toThrow(/aligned/);
    }
    expect(() => addon.firstNonFinite(new Uint8Array(8), 8)).toThrow(/f32, f16 or bf16/);
  });

  it('the native kernel is the one that runs on wasm with the add-on, and refuses mismatched bytes', async () => {
    const info = await initEngine();
    if (!info.native.enabled) return; // the plain-wasm and cpu runs check the fallback above
    const addon = nativeAddon()!;
    const bad = new Uint8Array(10);
    expect(() => addon.quantMatMul(new Float32Array(64), bad, GGML.Q8_0, 0, 32, 1, 1, 32)).toThrow(
      /do not match their type and shape/,
    );
  });

  it('--load-in-8bit keeps the linear weights out of the heap; the model still gives the float text', async () => {
    const float = await loadModel(STORIES);
    const before = tf.memory().numBytes;
    const q8 = await loadModel(STORIES, { quantize: 'q8_0' });
    const heapBytes = tf.memory().numBytes - before;
    // stories260K: 64-wide rows pack (q, k, v, o, gate, up); the 172-wide down projections stay float32.
    const layer0 = LINEARS.filter((l) => l !== 'mlp.down_proj');
    expect([...q8.model.packed.keys()].filter((k) => k.includes('layers.0.')).sort()).toEqual(
      layer0.map((p) => `model.layers.0.${p}.weight`).sort(),
    );
    expect(q8.model.params.has('model.layers.0.self_attn.q_proj.weight')).toBe(false);
    expect(heapBytes).toBeLessThan(0.5 * float.model.numParameters() * 4);
    expect(q8.model.numParameters()).toBe(float.model.numParameters());
    // Bytes as held: q8_0 stores 34 bytes per 32 weights (int8 codes and an f16 scale), the rest stays float32.
    const packedWeights = [...q8.model.packed.values()].reduce((n, p) => n + p.n * p.k, 0);
    expect(float.model.weightBytes()).toBe(4 * float.model.numParameters());
    expect(q8.model.weightBytes()).toBe(4 * (q8.model.numParameters() - packedWeights) + (packedWeights / 32) * 34);
    const opts = { maxNewTokens: 24 };
    expect((await generate(q8, ['Once upon a time'], opts))[0].text).toBe(
      (await generate(float, ['Once upon a time'], opts))[0].text,
    );
    float.model.dispose();
    q8.model.dispose();
  });

  it('a GGUF model keeps its stored types: logits those of the decoded model, up to the input rounding', async () => {
    const src = await loadModel(STORIES);
    const file = join(tmp(), 'q4.gguf');
    writeGgufModel(
      file,
      {
        config: src.model.config,
        raw: src.model.toRaw(),
        tokenizer: src.tokenizer!,
        name: 's',
      },
      'q4_0',
    );
    const packed = await loadModel(file);
    expect(packed.model.packed.get('model.layers.1.self_attn.k_proj.weight')?.type).toBe(GGML.Q4_0);
    // The embedding too (gathered row by row, and the tied head multiplies by it): nothing of the file is decoded whole.
    expect(packed.model.packed.get('model.embed_tokens.weight')?.type).toBe(GGML.Q4_0);
    expect(packed.model.params.size).toBe(2 * 5 + 1); // the norms only
    const g = readGgufModel(file);
    const decoded = LlamaModel.fromRaw(parseConfig(g.config, file), g.raw, file);
    const ids = [src.tokenizer!.encode('Tom and Sue went to the park. They saw a big dog')];
    const logits = (m: LlamaModel) =>
      tf.tidy(() => m.logits(m.forward(ids).reshape([-1, 64]) as tf.Tensor2D).dataSync());
    // The packed products round their input to 8 bits a block (as llama.cpp does; the op tests above hold
    // them to that exactly): measured, that moves logits by 0.24 where q4_0 itself moves them by 4.2.
    const [lp, ld, lf] = [packed.model, decoded, src.model].map(logits);
    expect(maxDiff(lp, ld)).toBeLessThan(0.1 * maxDiff(ld, lf));
    expect(maxDiff(lp, ld)).toBeLessThan(0.03 * Math.max(...Array.from(lf, Math.abs)));
    // Saved or exported, the packed weights decode back exactly.
    expect(packed.model.toRaw().get('model.layers.1.self_attn.k_proj.weight')!.data).toEqual(
      g.raw.get('model.layers.1.self_attn.k_proj.weight')!.data,
    );
    for (const m of [src.model, packed.model, decoded]) m.dispose();
  });

  it('LoRA trains on a packed base: gradients reach the first layer through the packed ones', async () => {
    const m: LoadedModel = await loadModel(STORIES, { quantize: 'q4_0' });
    addLora(m.model, { rank: 2, targets: ['q_proj'], seed: 1 });
    const ids = [m.tokenizer!.encode('Once upon a time there was a cat')];
    const names = [...m.model.adapters.keys()];
    const originals = names.map((n) => m.model.adapters.get(n)!);
    const { grads: g2 } = tf.valueAndGrads((...ps: tf.Tensor[]) => {
      names.forEach((n, i) => m.model.adapters.set(n, ps[i]));
      return tf.mean(m.model.logits(m.model.forward(ids).reshape([-1, 64]) as tf.Tensor2D)) as tf.Scalar;
    })(originals);
    names.forEach((n, i) => m.model.adapters.set(n, originals[i]));
    const first = names.findIndex((n) => n === 'model.layers.0.self_attn.q_proj.lora_B');
    const norm = tf.norm(g2[first]).dataSync()[0];
    expect(Number.isFinite(norm) && norm > 0).toBe(true);
    tf.dispose(g2);
    m.model.dispose();
  });

  it('llmbox quantize writes a folder that loads back with the same packed bytes as quantizing at load', async () => {
    const out = tmp();
    const r = spawnSync(process.execPath, [BIN, 'quantize', '-m', STORIES, '--to', 'q8_0', '--output', out, '--json'], {
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ type: 'q8_0', tensors: 47 });
    const [folder, atLoad] = [await loadModel(out), await loadModel(STORIES, { quantize: 'q8_0' })];
    expect(folder.name).toBe(out.split('/').at(-1));
    for (const [name, pk] of atLoad.model.packed)
      expect(Buffer.from(folder.model.packed.get(name)!.weights).equals(Buffer.from(pk.weights)), name).toBe(true);
    const again = await loadModel(out);
    for (const [name, pk] of folder.model.packed)
      expect(Buffer.from(again.model.packed.get(name)!.weights).equals(Buffer.from(pk.weights))).toBe(true);
    expect((await generate(folder, ['Once upon a time'], { maxNewTokens: 16 }))[0].text).toBe(
      (await generate(atLoad, ['Once upon a time'], { maxNewTokens: 16 }))[0].text,
    );
    for (const m of [folder, atLoad, again]) m.model.dispose();
  });

  it('the model hash tells the same model at each precision apart (results and resume state are never shared)', async () => {
    const { modelHashAsync } = await import('../lib/eval/results.js');
    const models = [
      await loadModel(STORIES),
      await loadModel(STORIES, { quantize: 'q8_0' }),
      await loadModel(STORIES, { quantize: 'q4_0' }),
      await loadModel(STORIES, { quantize: 'q4_1' }),
      await loadModel(STORIES, { quantize: 'nf4' }),
    ];
    const hashes = await Promise.all(models.map((m) => modelHashAsync(m.model)));
    expect(new Set(hashes).size).toBe(models.length);
    // ... and is a function of the weights: the same load gives the same hash.
    const again = await loadModel(STORIES, { quantize: 'q4_0' });
    expect(await modelHashAsync(again.model)).toBe(hashes[2]);
    for (const m of [...models, again]) m.model.dispose();
  });

  it('a bf16 or f16 folder keeps its matrices as stored (no float32 copy); logits those of the widened weights', async () => {
    const info = await initEngine();
    for (const dtype of ['BF16', 'F16'] as const) {
      const { dir, widened } = halfFolder(dtype);
      const half = await loadModel(dir);
      const float = await loadModel(widened);
      const ids = [half.tokenizer!.encode('Tom and Sue went to the park. They saw a big dog')];
      const logits = (m: LlamaModel) =>
        tf.tidy(() => m.logits(m.forward(ids).reshape([-1, 64]) as tf.Tensor2D).dataSync());
      const [lh, lf] = [half.model, float.model].map(logits);
      expect(maxDiff(lh, lf)).toBeLessThan(1e-5 * Math.max(...Array.from(lf, Math.abs)));
      const code = dtype === 'BF16' ? GGML.BF16 : GGML.F16;
      if (info.native.enabled) {
        // Every linear (the 172-wide ones too) as stored; the norms and the tied embedding widened.
        expect(half.model.packed.size).toBe(7 * 5);
        expect([...half.model.packed.values()].every((p) => p.type === code)).toBe(true);
        expect(half.model.params.size).toBe(2 * 5 + 1 + 1);
        expect(half.model.weightBytes()).toBeLessThan(0.75 * float.model.weightBytes());
      } else expect(half.model.packed.size).toBe(0); // decoding a matrix for every product would be slower than float32
      // --load-in-8bit packs each matrix as it is read: the bytes of packing the float32 folder.
      const [a, b] = [await loadModel(dir, { quantize: 'q8_0' }), await loadModel(widened, { quantize: 'q8_0' })];
      const q = 'model.layers.2.mlp.up_proj.weight';
      expect(a.model.packed.get(q)!.weights).toEqual(b.model.packed.get(q)!.weights);
      for (const m of [half, float, a, b]) m.model.dispose();
    }
  });

  it('a stored bf16 matrix with a NaN is refused, naming the tensor', async () => {
    const { dir } = halfFolder('BF16', (name, bytes) => {
      if (name === 'model.layers.3.mlp.gate_proj.weight') bytes.set([0xc0, 0x7f], 2 * 77); // a bf16 NaN
    });
    const info = await initEngine();
    const err = (await loadModel(dir).then(
      () => null,
      (e: unknown) => e,
    )) as { message: string; field?: string };
    if (info.native.enabled) {
      expect(err.message).toMatch(/holds NaN\/Inf values \(first at element 77\)/);
      expect(err.field).toBe('model.layers.3.mlp.gate_proj.weight');
    } else expect(err.message).toMatch(/NaN\/Inf value/);
  });

  it('full training widens bf16 matrices to float32 parameters and updates them', async () => {
    const { train } = await import('../lib/train/trainer.js');
    const m = await loadModel(halfFolder('BF16').dir);
    const name = 'model.layers.0.self_attn.q_proj.weight';
    const before = m.model.packed.get(name)?.decode() ?? tf.transpose(m.model.params.get(name)!).dataSync();
    const text = join(tmp(), 'story.txt');
    writeFileSync(
      text,
      'Once upon a time, there was a little girl named Lily. She loved to play outside.\n'.repeat(20),
    );
    await train(m, { datasets: [text], stage: 'pt', maxSteps: 1, maxLength: 32, valSize: 0 });
    expect(m.model.packed.size).toBe(0);
    const after = tf.transpose(m.model.params.get(name)!).dataSync();
    expect(maxDiff(after, before)).toBeGreaterThan(0);
    m.model.dispose();
  });

  it('full training on a packed base is refused (it would leave the packed weights untouched)', async () => {
    const { train } = await import('../lib/train/trainer.js');
    const m = await loadModel(STORIES, { quantize: 'q8_0' });
    await expect(train(m, { datasets: [join(STORIES, 'PROVENANCE.md')], stage: 'pt', maxSteps: 1 })).rejects.toThrow(
      /train only through LoRA/,
    );
    m.model.dispose();
  });

  it('CLI: --load-in-8bit and --load-in-4bit on generate; --quant alone is refused', () => {
    const run = (...a: string[]) => spawnSync(process.execPath, [BIN, ...a], { encoding: 'utf8' });
    const base = ['generate', '-m', STORIES, '-p', 'Once upon a time', '--max-new-tokens', '12', '--json'];
    const f = JSON.parse(run(...base).stdout).text;
    expect(JSON.parse(run('--load-in-8bit', ...base).stdout).text).toBe(f);
    const q4 = run('--load-in-4bit', '--quant', 'q4_1', ...base);
    expect(q4.status, q4.stderr).toBe(0);
    const bad = run('--quant', 'q4_0', ...base);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--quant says which 4-bit type --load-in-4bit uses/);
    const eight = run('--load-in-8bit', '--quant', 'q4_0', ...base);
    expect(eight.status).toBe(2); // --quant with 8 bits would be ignored
    const nf4 = run('--load-in-4bit', '--quant', 'nf4', ...base);
    expect(nf4.status, nf4.stderr).toBe(0);
    expect(JSON.parse(nf4.stdout).text.length).toBeGreaterThan(0);
  });
});
