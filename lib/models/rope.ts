import type { ModelConfig } from './config.js';

/**
 * Inverse RoPE frequencies over the rotated dimensions (a whole head, or GPT-NeoX's part of one), in
 * float32 as Hugging Face and llama2.c compute them, with linear and llama3 scaling applied.
 */
export function ropeInvFreq(cfg: ModelConfig): Float32Array {
  const dim = cfg.rotaryDim,
    half = dim / 2;
  const f = Math.fround;
  const inv = new Float32Array(half);
  for (let i = 0; i < half; i++) inv[i] = f(1 / f(Math.pow(cfg.ropeTheta, f((2 * i) / dim))));
  const rs = cfg.ropeScaling;
  if (rs?.type === 'linear') {
    for (let i = 0; i < half; i++) inv[i] = f(inv[i] / rs.factor);
  } else if (rs?.type === 'llama3') {
    const lowWavelen = rs.originalMaxPositionEmbeddings / rs.lowFreqFactor;
    const highWavelen = rs.originalMaxPositionEmbeddings / rs.highFreqFactor;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen > lowWavelen) inv[i] = f(inv[i] / rs.factor);
      else if (wavelen >= highWavelen) {
        const smooth =
          (rs.originalMaxPositionEmbeddings / wavelen - rs.lowFreqFactor) / (rs.highFreqFactor - rs.lowFreqFactor);
        inv[i] = f((1 - smooth) * (inv[i] / rs.factor) + smooth * inv[i]);
      }
    }
  }
  return inv;
}

/**
 * cos and signed-sin tables [positions.length, headDim] for rotate_half RoPE:
 * rope(x) = x * cos + swapHalves(x) * sinSigned, where sinSigned's first half is negated.
 */
export function ropeTables(
  invFreq: Float32Array,
  positions: ArrayLike<number>,
): { cos: Float32Array; sin: Float32Array } {
  const half = invFreq.length,
    dim = half * 2,
    n = positions.length;
  const cos = new Float32Array(n * dim),
    sin = new Float32Array(n * dim);
  for (let p = 0; p < n; p++) {
    for (let i = 0; i < half; i++) {
      const angle = Math.fround(positions[p] * invFreq[i]);
      const c = Math.cos(angle),
        s = Math.sin(angle);
      cos[p * dim + i] = c;
      cos[p * dim + half + i] = c;
      sin[p * dim + i] = -s;
      sin[p * dim + half + i] = s;
    }
  }
  return { cos, sin };
}
