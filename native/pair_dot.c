// Decode rows (one to three input rows) with 4-bit weights on AVX-512 VNNI: two blocks a vector.
//
// The AVX2 decode kernel spends about 15 instructions on each block of 32 weights (nibbles, two
// multiply-adds, the zero point, the scale), which left q4_0 decoding bound by its arithmetic at
// 13 GB/s a core where q8_0 streams at 20-30. Here one 512-bit vector holds two blocks, vpdpbusd
// does the multiply-adds in one instruction, and the input is laid out once per call in the order
// the vector wants (two blocks' values side by side, their scales as lanes), so every step is a few
// instructions for 64 weights. Each block's integer sum and scale are those of the AVX2 kernel; only
// the order in which blocks are added differs.
#include "quant.h"
#include <string.h>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#include <immintrin.h>
// Blocks ahead the weights are prefetched (256 to 4096 measured alike).
#define PAIR_PREFETCH 1024

struct act_pair {
  int8_t q[64];    // blocks 2p and 2p + 1, in order
  union {
    int32_t i[16]; // q4_0: -8 times the groups of 4 (the starting sums); q4_z: the groups
    float f[16];   // q4_1: the input's scale times the groups (its minimum multiplies them)
  } c;
  float d[16];     // lanes 0-7 block 2p's scale, 8-15 block 2p + 1's
};

int pair_dot_enabled(void) { return 1; }

size_t pair_input_bytes(int64_t nb) { return sizeof(act_pair) * (size_t)((nb + 1) / 2); }

void pair_input(int type, const act_block *x, int64_t nb, act_pair *out) {
  for (int64_t p = 0; p < (nb + 1) / 2; p++) {
    act_pair *o = out + p;
    for (int h = 0; h < 2; h++) {
      const int64_t b = 2 * p + h;
      // A missing last block is zeros: it adds nothing (its weights are a zero-padded copy).
      const act_block zero = {0};
      const act_block *xb = b < nb ? x + b : &zero;
      memcpy(o->q + 32 * h, xb->q, 32);
      for (int g = 0; g < 8; g++) {
        if (type == T_Q4_0) o->c.i[8 * h + g] = -8 * xb->groups[g];
        else if (type == T_Q4_Z) o->c.i[8 * h + g] = xb->groups[g];
        else o->c.f[8 * h + g] = xb->d * (float)xb->groups[g];
        o->d[8 * h + g] = xb->d;
      }
    }
  }
}

// Two blocks' 16 bytes of nibbles as 64 values in the input's order: 128-bit lanes are block 0's
// low nibbles (its values 0-15), its high nibbles (16-31), then block 1's.
static inline __m512i nibbles2(const uint8_t *b0, const uint8_t *b1) {
  const __m256i t = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)b0)),
                                            _mm_loadu_si128((const __m128i *)b1), 1);
  const __m512i u = _mm512_shuffle_i64x2(_mm512_castsi256_si512(t), _mm512_castsi256_si512(t), _MM_SHUFFLE(1, 1, 0, 0));
  return _mm512_and_si512(_mm512_mask_srli_epi16(u, 0xff00ff00u, u, 4), _mm512_set1_epi8(0x0f));
}

// 16-bit words of the 32 bytes at p, word a in lanes 0-7 and word b in lanes 8-15: one field of two
// consecutive blocks (b - a is the block size in words).
static inline __m256i words2(const uint8_t *p, int a, int b) {
  const __m256i idx = _mm256_setr_epi16(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b);
  return _mm256_permutexvar_epi16(idx, _mm256_loadu_si256((const __m256i *)p));
}

// One pair of blocks (at w, `stride` bytes each) into acc. The constants specialise it per type.
static inline __attribute__((always_inline)) __m512 pair_step(int type, const uint8_t *w, const act_pair *x, __m512 acc) {
  const int stride = type == T_Q4_0 ? 18 : 20, qs = type == T_Q4_0 ? 2 : 4, sw = stride / 2;
  const __m512i nib = nibbles2(w + qs, w + stride + qs), xq = _mm512_load_si512(x->q);
  const __m512 dw = _mm512_cvtph_ps(words2(w, 0, sw));
  const __m512 dx = _mm512_load_ps(x->d);
  __m512i p;
  if (type == T_Q4_0) p = _mm512_dpbusd_epi32(_mm512_load_si512(x->c.i), nib, xq);
  else p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), nib, xq);
  if (type == T_Q4_Z) {
    const __m512i z = _mm512_and_si512(_mm512_cvtepu16_epi32(words2(w, 1, sw + 1)), _mm512_set1_epi32(0xff));
    p = _mm512_sub_epi32(p, _mm512_mullo_epi32(_mm512_load_si512(x->c.i), z));
  }
  acc = _mm512_fmadd_ps(_mm512_mul_ps(dw, dx), _mm512_cvtepi32_ps(p), acc);
  // q4_1: w = d q + m, so m times the input's groups comes on.
  if (type == T_Q4_1) acc = _mm512_fmadd_ps(_mm512_cvtph_ps(words2(w, 1, sw + 1)), _mm512_load_ps(x->c.f), acc);
  return acc;
}

static inline __attribute__((always_inline)) float pair_dot_t(int type, const uint8_t *w, const act_pair *x, int64_t nb) {
  const int stride = type == T_Q4_0 ? 18 : 20;
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t p = 0;
  // Two pairs a step into two sums, so that neither multiply-add waits on the other.
  for (; 2 * p + 4 <= nb; p += 2) {
    const uint8_t *blk = w + 2 * p * stride;
    _mm_prefetch((const char *)(blk + stride * PAIR_PREFETCH), _MM_HINT_T0);
    acc0 = pair_step(type, blk, x + p, acc0);
    acc1 = pair_step(type, blk + 2 * stride, x + p + 1, acc1);
  }
  for (; 2 * p + 2 <= nb; p++) acc0 = pair_step(type, w + 2 * p * stride, x + p, acc0);
  if (2 * p < nb) {
    // The odd last block, from a copy padded with zeros (the vector reads two blocks' bytes).
    uint8_t last[64] = {0};
    memcpy(last, w + 2 * p * stride, (size_t)stride);
    acc1 = pair_step(type, last, x + p, acc1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

float pair_dot(int type, const uint8_t *w, const act_pair *x, int64_t nb) {
  switch (type) {
    case T_Q4_0: return pair_dot_t(T_Q4_0, w, x, nb);
    case T_Q4_1: return pair_dot_t(T_Q4_1, w, x, nb);
    default: return pair_dot_t(T_Q4_Z, w, x, nb);
  }
}
#else
int pair_dot_enabled(void) { return 0; }
size_t pair_input_bytes(int64_t nb) { return (void)nb, 0; }
void pair_input(int type, const act_block *x, int64_t nb, act_pair *out) { (void)type, (void)x, (void)nb, (void)out; }
float pair_dot(int type, const uint8_t *w, const act_pair *x, int64_t nb) { return (void)type, (void)w, (void)x, (void)nb, 0.f; }
#endif
