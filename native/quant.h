// What the add-on's quantized kernels share: half floats, the stored block types, and the input
// rows rounded to 8 bits per block of 32 that products with q8_0 and 4-bit weights take.
#ifndef LLMBOX_QUANT_H
#define LLMBOX_QUANT_H
#include <stdint.h>
#include <string.h>

// Types (ggml's numbering): 0 f32, 1 f16, 30 bf16, 8 q8_0 (blocks of 32: f16 scale, 32 int8),
// 2 q4_0 (f16 scale, 16 bytes of 4-bit values offset by 8), 3 q4_1 (f16 scale, f16 minimum, 16
// bytes); and one of llmbox's own, 256 q4_z (f16 scale, a byte zero point z, a zero byte, 16 bytes:
// w = d (q - z)), the layout GPTQ checkpoints' groups load into.
enum { T_F32 = 0, T_F16 = 1, T_BF16 = 30, T_Q8_0 = 8, T_Q4_0 = 2, T_Q4_1 = 3, T_Q4_Z = 256 };

#if defined(__F16C__)
#include <immintrin.h>
static inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }
#else
static inline float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0) {
    if (mant == 0) bits = sign;
    else {
      // A subnormal half is a normal float.
      exp = 127 - 15 + 1;
      while (!(mant & 0x400)) { mant <<= 1; exp--; }
      bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 0x1f) bits = sign | 0x7f800000u | (mant << 13);
  else bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}
#endif

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

// One block of 32 input values rounded to int8 with one float scale (ops.ts roundActivations).
typedef struct {
  float d;
  int32_t sum; // sum of q (the zero points and q4_1's minimum multiply it)
  int8_t q[32];
  int32_t groups[8]; // sums of q's groups of 4 (q[4g..4g+3]), the values one int32 lane of a dot covers
} act_block;

// The tiled integer product (int8_gemm.c), where the CPU has AVX2 (with or without VNNI) or AVX-512 VNNI.
// int8_gemm_lanes() is the number of weight rows a tile holds (a call's j0 must be a multiple of it),
// or 0 where the kernel is not compiled in.
int int8_gemm_lanes(void);
// For q8_0 the input multiplies as unsigned bytes (q + 128): call once on a call's rounded rows.
void int8_gemm_input(int type, act_block *xq, int64_t blocks);
// out[r * n + j] = dot(x row r, W row j) for j in [j0, j1) and r < rows, W [n x k] in `type`
// (q8_0, q4_0, q4_1 or q4_z) with rows rb bytes apart, x rounded to nb = k / 32 blocks a row.
// Returns 0 when out of memory.
int int8_gemm(int type, const uint8_t *w, size_t rb, const act_block *xq, int64_t rows, int64_t nb, int64_t n, int64_t j0,
              int64_t j1, float *out);

// Decode rows with 4-bit weights two blocks a vector, where the CPU has AVX-512 VNNI (pair_dot.c;
// pair_dot_enabled() is 0 elsewhere). pair_input lays one rounded input row out for `type` (q4_0,
// q4_1 or q4_z) into pair_input_bytes(nb) bytes, 64-byte aligned; pair_dot is one weight row's dot.
typedef struct act_pair act_pair;
int pair_dot_enabled(void);
size_t pair_input_bytes(int64_t nb);
void pair_input(int type, const act_block *x, int64_t nb, act_pair *out);
float pair_dot(int type, const uint8_t *w, const act_pair *x, int64_t nb);

// Blocks b0..b1 of 32 stored values (src_type f32, f16 or bf16) written as `type` (q8_0, q4_0 or q4_1)
// into dst (quantize.c); quant_block_bytes(type) is a block's size there, 0 for other types.
int quant_block_bytes(int type);
void quantize_blocks(int src_type, const uint8_t *src, int type, uint8_t *dst, int64_t b0, int64_t b1);
#endif
