// Float weights to q8_0, q4_0 and q4_1 blocks, byte for byte as ggml's reference quantizers (and
// lib/models/ggml-quants.ts encodeGgml, the composed definition the tests compare against) write
// them: float32 arithmetic (no fused multiply-adds: the build is -std=c11, which turns contraction
// off), C's roundf for q8_0, truncation after +8.5 / +0.5 for the 4-bit types.
// In JavaScript, --load-in-8bit on a 7B bf16 folder spent about 190 of its 219 s here.
#include <math.h>
#include "quant.h"

// float32 -> f16, round to nearest even, infinities and NaN kept (as F16C's vcvtps2ph does).
static uint16_t float_to_half(float x) {
  uint32_t b;
  memcpy(&b, &x, 4);
  const uint32_t sign = (b >> 16) & 0x8000, exp = (b >> 23) & 0xff;
  uint32_t mant = b & 0x7fffff;
  if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
  const int e = (int)exp - 127 + 15;
  if (e >= 0x1f) return (uint16_t)(sign | 0x7c00);
  if (e <= 0) {
    if (e < -10) return (uint16_t)sign;
    mant |= 0x800000;
    const int shift = 14 - e;
    const uint32_t half = 1u << (shift - 1), rest = mant & ((1u << shift) - 1);
    uint32_t m = mant >> shift;
    if (rest > half || (rest == half && (m & 1))) m++;
    return (uint16_t)(sign | m);
  }
  uint32_t m = mant >> 13, ex = (uint32_t)e;
  const uint32_t rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (m & 1))) {
    // A carry out of the mantissa moves to the exponent (up to infinity).
    if (++m == 0x400) {
      m = 0;
      if (++ex >= 0x1f) return (uint16_t)(sign | 0x7c00);
    }
  }
  return (uint16_t)(sign | (ex << 10) | m);
}

static void wr16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v & 0xff);
  p[1] = (uint8_t)(v >> 8);
}

// One block of 32 stored values (f32, f16 or bf16) as float32.
static void widen_block(int src_type, const uint8_t *src, float *x) {
  for (int j = 0; j < 32; j++) {
    if (src_type == T_F32) memcpy(x + j, src + 4 * j, 4);
    else if (src_type == T_F16) x[j] = half_to_float(rd16(src + 2 * j));
    else {
      const uint32_t bits = (uint32_t)rd16(src + 2 * j) << 16;
      memcpy(x + j, &bits, 4);
    }
  }
}

static void q8_0_block(const float *x, uint8_t *out) {
  float amax = 0.f;
  for (int j = 0; j < 32; j++) amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
  const float d = amax / 127.f, id = d != 0.f ? 1.f / d : 0.f;
  wr16(out, float_to_half(d));
  for (int j = 0; j < 32; j++) out[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
}

static void q4_0_block(const float *x, uint8_t *out) {
  // The value of largest magnitude, with its sign, maps to -8.
  float amax = 0.f, max = 0.f;
  for (int j = 0; j < 32; j++)
    if (fabsf(x[j]) > amax) {
      amax = fabsf(x[j]);
      max = x[j];
    }
  const float d = max / -8.f, id = d != 0.f ? 1.f / d : 0.f;
  wr16(out, float_to_half(d));
  for (int j = 0; j < 16; j++) {
    const int lo = (int)(x[j] * id + 8.5f), hi = (int)(x[16 + j] * id + 8.5f);
    out[2 + j] = (uint8_t)((lo < 15 ? lo : 15) | ((hi < 15 ? hi : 15) << 4));
  }
}

static void q4_1_block(const float *x, uint8_t *out) {
  // As JavaScript's Math.min and Math.max: -0 is below +0 (the minimum is stored, sign and all).
  float min = x[0], max = x[0];
  for (int j = 1; j < 32; j++) {
    if (x[j] < min || (x[j] == min && signbit(x[j]))) min = x[j];
    if (x[j] > max || (x[j] == max && !signbit(x[j]))) max = x[j];
  }
  const float d = (max - min) / 15.f, id = d != 0.f ? 1.f / d : 0.f;
  wr16(out, float_to_half(d));
  wr16(out + 2, float_to_half(min));
  for (int j = 0; j < 16; j++) {
    const int lo = (int)((x[j] - min) * id + 0.5f), hi = (int)((x[16 + j] - min) * id + 0.5f);
    out[4 + j] = (uint8_t)((lo < 15 ? lo : 15) | ((hi < 15 ? hi : 15) << 4));
  }
}

int quant_block_bytes(int type) { return type == T_Q8_0 ? 34 : type == T_Q4_0 ? 18 : type == T_Q4_1 ? 20 : 0; }

void quantize_blocks(int src_type, const uint8_t *src, int type, uint8_t *dst, int64_t b0, int64_t b1) {
  const size_t in = src_type == T_F32 ? 128 : 64, outb = (size_t)quant_block_bytes(type);
  float x[32];
  for (int64_t b = b0; b < b1; b++) {
    widen_block(src_type, src + (size_t)b * in, x);
    uint8_t *o = dst + (size_t)b * outb;
    if (type == T_Q8_0) q8_0_block(x, o);
    else if (type == T_Q4_0) q4_0_block(x, o);
    else q4_1_block(x, o);
  }
}
