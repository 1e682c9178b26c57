import { describe, expect, it } from 'vitest';
import { parseConfig } from '../lib/models/config.js';
import { ropeInvFreq, ropeTables } from '../lib/models/rope.js';

const base = {
  model_type: 'llama',
  vocab_size: 10,
  hidden_size: 64,
  intermediate_size: 8,
  num_hidden_layers: 1,
  num_attention_heads: 1,
};

describe('RoPE', () => {
  it('uses theta^(-2i/d) frequencies', () => {
    const inv = ropeInvFreq(parseConfig({ ...base, rope_theta: 10000 }));
    expect(inv.length).toBe(32);
    inv.forEach((x, i) => expect(x).toBeCloseTo(Math.pow(10000, -(2 * i) / 64), 6));
  });

  it('linear scaling by f at position f*p equals no scaling at p', () => {
    const plain = ropeInvFreq(parseConfig(base));
    const scaled = ropeInvFreq(parseConfig({ ...base, rope_scaling: { type: 'linear', factor: 4 } }));
    const a = ropeTables(plain, [3]),
      b = ropeTables(scaled, [12]);
    a.cos.forEach((x, i) => expect(b.cos[i]).toBeCloseTo(x, 5));
  });

  it('llama3 scaling keeps high frequencies, divides low ones by the factor, and blends between', () => {
    const cfg = {
      ...base,
      rope_theta: 500000,
      rope_scaling: {
        rope_type: 'llama3',
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 8192,
      },
    };
    const plain = ropeInvFreq(parseConfig({ ...base, rope_theta: 500000 }));
    const scaled = ropeInvFreq(parseConfig(cfg));
    plain.forEach((f, i) => {
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < 8192 / 4) expect(scaled[i]).toBe(f);
      else if (wavelen > 8192) expect(scaled[i]).toBeCloseTo(f / 8, 12);
      else {
        expect(scaled[i]).toBeLessThan(f);
        expect(scaled[i]).toBeGreaterThan(f / 8);
      }
    });
    expect(scaled.some((x, i) => x === plain[i])).toBe(true);
    expect(scaled.some((x, i) => Math.abs(x - plain[i] / 8) < 1e-12)).toBe(true);
  });

  it('tables rotate with the first half of sin negated', () => {
    const { cos, sin } = ropeTables(Float32Array.from([1, 0.5]), [2]);
    expect(cos[0]).toBeCloseTo(Math.cos(2), 6);
    expect(cos[2]).toBeCloseTo(Math.cos(2), 6);
    expect(sin[1]).toBeCloseTo(-Math.sin(1), 6);
    expect(sin[3]).toBeCloseTo(Math.sin(1), 6);
  });
});
