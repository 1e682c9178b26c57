/** llama.cpp's rounding of a quantized product's input, in scalar float32: per 32 values d = amax / 127, q = round half even (x / d). */
export function roundedRows(x: Float32Array, k: number): Float32Array {
  const f = Math.fround;
  const out = new Float32Array(x.length);
  for (let b = 0; b < x.length / 32; b++) {
    const block = x.subarray(b * 32, b * 32 + 32);
    const d = f(Math.max(...Array.from(block, Math.abs)) / 127);
    const inv = d > 0 ? f(1 / d) : 0;
    block.forEach((v, j) => {
      const t = f(v * inv);
      const r = Math.round(t);
      const q = Math.abs(t % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r; // half to even
      out[b * 32 + j] = f(q * d);
    });
  }
  if (k % 32) throw new Error(`rows of ${k} are not whole blocks of 32`);
  return out;
}
