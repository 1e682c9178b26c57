// Products of many input rows with q8_0 / 4-bit weights in integer arithmetic (prefill, scoring).
//
// The decode kernel dots one weight row with one input row, reducing across a vector for every pair.
// With several input rows that reduction, the scale broadcast and the format decoding repeat for
// each pair; here a tile of LANES weight rows is first transposed so that one vector holds the same
// 4 values of each row's block, and a VNNI instruction (vpdpbusd: u8 x s8, 4 products summed into
// each int32 lane) then multiplies it by 4 input values broadcast: every lane is one output, nothing
// is reduced across lanes, and the tile is reused by every input row (AVX2 CPUs without VNNI take
// two instructions for it, below). Sums are exact in int32; each
// block's sum is scaled in float, as the decode kernel and ops.ts roundActivations define.
#include "quant.h"
#include <stdlib.h>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define LANES 16
typedef __m512i vi;
typedef __m512 vf;
#define VI_LOAD(p) _mm512_load_si512((const void *)(p))
#define VI_STORE(p, v) _mm512_store_si512((void *)(p), (v))
#define VI_SET1(x) _mm512_set1_epi32(x)
#define VI_ZERO() _mm512_setzero_si512()
#define VI_AND(a, b) _mm512_and_si512(a, b)
#define VI_SRL(a, s) _mm512_srli_epi32(a, s)
#define VI_SLL(a, s) _mm512_slli_epi32(a, s)
#define VI_ADD(a, b) _mm512_add_epi32(a, b)
#define VI_SUB(a, b) _mm512_sub_epi32(a, b)
#define VI_MUL(a, b) _mm512_mullo_epi32(a, b)
#define VI_DP(acc, u, s) _mm512_dpbusd_epi32(acc, u, s)
#define VF_CVT(v) _mm512_cvtepi32_ps(v)
#define VF_LOAD(p) _mm512_load_ps(p)
#define VF_STOREU(p, v) _mm512_storeu_ps(p, v)
#define VF_SET1(x) _mm512_set1_ps(x)
#define VF_ZERO() _mm512_setzero_ps()
#define VF_MUL(a, b) _mm512_mul_ps(a, b)
#define VF_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define LANES 8
typedef __m256i vi;
typedef __m256 vf;
#define VI_LOAD(p) _mm256_load_si256((const __m256i *)(p))
#define VI_STORE(p, v) _mm256_store_si256((__m256i *)(p), (v))
#define VI_SET1(x) _mm256_set1_epi32(x)
#define VI_ZERO() _mm256_setzero_si256()
#define VI_AND(a, b) _mm256_and_si256(a, b)
#define VI_SRL(a, s) _mm256_srli_epi32(a, s)
#define VI_SLL(a, s) _mm256_slli_epi32(a, s)
#define VI_ADD(a, b) _mm256_add_epi32(a, b)
#define VI_SUB(a, b) _mm256_sub_epi32(a, b)
#define VI_MUL(a, b) _mm256_mullo_epi32(a, b)
#define VF_CVT(v) _mm256_cvtepi32_ps(v)
#define VF_LOAD(p) _mm256_load_ps(p)
#define VF_STOREU(p, v) _mm256_storeu_ps(p, v)
#define VF_SET1(x) _mm256_set1_ps(x)
#define VF_ZERO() _mm256_setzero_ps()
#define VF_MUL(a, b) _mm256_mul_ps(a, b)
#define VF_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#if defined(__AVXVNNI__)
#define VI_DP(acc, u, s) _mm256_dpbusd_avx_epi32(acc, u, s)
#else
// Without VNNI (Zen 2 and 3, Intel before Ice Lake): vpmaddubsw (u8 x s8, pairs summed into int16)
// and vpmaddwd (int16 pairs into int32) stand in for vpdpbusd. A pair must fit in int16, so q8_0
// keeps its input signed and moves each weight's sign onto it (|w| x sign(x, w): at most 2 x 128 x
// 127) instead of offsetting the input by 128, which would overflow.
#define PAIRS_IN_INT16 1
#endif
#endif

#ifdef LANES
// A tile: for each block, 8 vectors (vector g holds input values 4g..4g+3 of every row's block, as
// u8 for 4-bit types and s8 for q8_0), then per row the block's integer offset, scale and minimum.
typedef struct {
  vi *vals;
  int32_t *offset; // q8_0: -128 sum(w) (the input's +128 undone; unused with PAIRS_IN_INT16); 4-bit: the zero point z
  float *d, *m;    // m: q4_1's minimum, else unused
} tile;

// aligned_alloc wants a size that is a multiple of the alignment.
static void *alloc64(size_t bytes) { return aligned_alloc(64, (bytes + 63) & ~(size_t)63); }

// Four input values as one int32, to broadcast.
static inline int32_t word(const int8_t *p) {
  int32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

// Eight rows' dwords transposed: out[g] holds dword g of each row (8x8 in 24 shuffles, where a
// gather instruction per vector cost 2x the whole product at a few input rows). count is 8 (q8_0's
// 32 bytes) or 4 (a 4-bit block's 16 bytes; its dwords 4-7 are not formed).
static void transpose8(const uint8_t *const *row, int count, __m256i *out) {
  __m256i r[8], t[8], u[8];
  for (int i = 0; i < 8; i++)
    r[i] = count == 8 ? _mm256_loadu_si256((const __m256i *)row[i])
                      : _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)row[i]));
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int g = 0; g < 4; g++) out[g] = _mm256_permute2x128_si256(u[g], u[g + 4], 0x20);
  if (count == 8)
    for (int g = 0; g < 4; g++) out[4 + g] = _mm256_permute2x128_si256(u[g], u[g + 4], 0x31);
}

// The same across the tile's LANES rows: out[g] lane l is dword g of the bytes at row[l].
static void transpose_tile(const uint8_t *const *row, int count, vi *out) {
#if LANES == 16
  __m256i a[8], b[8];
  transpose8(row, count, a);
  transpose8(row + 8, count, b);
  for (int g = 0; g < count; g++) out[g] = _mm512_inserti64x4(_mm512_castsi256_si512(a[g]), b[g], 1);
#else
  transpose8(row, count, out);
#endif
}

// Regathers weight rows [j, j + valid) into the tile; lanes past `valid` repeat the last row.
static void pack_tile(int type, const uint8_t *w, size_t rb, int64_t j, int valid, int64_t nb, tile *t) {
  // A block's size, and where its values start (after the f16 scale, and q4_1's minimum or q4_z's zero).
  const size_t bytes = rb / (size_t)nb;
  const int qs = type == T_Q8_0 || type == T_Q4_0 ? 2 : 4;
  const uint8_t *row[LANES];
  for (int l = 0; l < LANES; l++) row[l] = w + (size_t)(j + (l < valid ? l : valid - 1)) * rb;
  const vi lo = VI_SET1(0x0f0f0f0f);
#ifndef PAIRS_IN_INT16
  const vi ones = VI_SET1(0x01010101);
#endif
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *at[LANES];
    for (int l = 0; l < LANES; l++) at[l] = row[l] + b * bytes + qs;
    vi *v = t->vals + b * 8;
    if (type == T_Q8_0) {
      transpose_tile(at, 8, v);
#ifndef PAIRS_IN_INT16
      vi sum = VI_ZERO();
      for (int g = 0; g < 8; g++) sum = VI_DP(sum, ones, v[g]);
      VI_STORE(t->offset + b * LANES, VI_SUB(VI_ZERO(), VI_SLL(sum, 7)));
#endif
    } else {
      // Byte i of a 4-bit block holds element i (low nibble) and element 16 + i (high nibble).
      transpose_tile(at, 4, v);
      for (int h = 0; h < 4; h++) {
        v[4 + h] = VI_AND(VI_SRL(v[h], 4), lo);
        v[h] = VI_AND(v[h], lo);
      }
    }
    for (int l = 0; l < LANES; l++) {
      const uint8_t *p = row[l] + b * bytes;
      t->d[b * LANES + l] = half_to_float(rd16(p));
      if (type == T_Q4_1) t->m[b * LANES + l] = half_to_float(rd16(p + 2));
      if (type != T_Q8_0) t->offset[b * LANES + l] = type == T_Q4_0 ? 8 : type == T_Q4_Z ? p[2] : 0;
    }
  }
}

#ifdef PAIRS_IN_INT16
// A block's integer sums for rm input rows: each weight vector is loaded once for all of them. The
// 4-bit types add up to 8 int16 pair sums (each at most 2 x 15 x 127) before widening them once.
static inline __attribute__((always_inline)) void block_sums(int type, const vi *v, const act_block *x, int64_t nb, int rm,
                                                             vi *s) {
  const vi ones16 = _mm256_set1_epi16(1);
  for (int r = 0; r < rm; r++) s[r] = VI_ZERO();
  for (int g = 0; g < 8; g++) {
    const vi w = VI_LOAD(v + g);
    const vi aw = type == T_Q8_0 ? _mm256_abs_epi8(w) : w;
    for (int r = 0; r < rm; r++) {
      const vi xb = VI_SET1(word(x[r * nb].q + 4 * g));
      if (type == T_Q8_0) s[r] = VI_ADD(s[r], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(xb, w)), ones16));
      else s[r] = _mm256_add_epi16(s[r], _mm256_maddubs_epi16(w, xb));
    }
  }
  if (type != T_Q8_0)
    for (int r = 0; r < rm; r++) s[r] = _mm256_madd_epi16(s[r], ones16);
}

static inline __attribute__((always_inline)) void tile_rows(int type, const tile *t, const act_block *xq, int64_t nb, int rm,
                                                            vf *acc) {
  for (int r = 0; r < rm; r++) acc[r] = VF_ZERO();
  for (int64_t b = 0; b < nb; b++) {
    vi s[4];
    block_sums(type, t->vals + b * 8, xq + b, nb, rm, s);
    const vi off = VI_LOAD(t->offset + b * LANES);
    const vf d = VF_LOAD(t->d + b * LANES);
    for (int r = 0; r < rm; r++) {
      const act_block *x = xq + r * nb + b;
      if (type != T_Q8_0) s[r] = VI_ADD(s[r], VI_MUL(off, VI_SET1(-x->sum)));
      acc[r] = VF_FMA(VF_CVT(s[r]), VF_MUL(d, VF_SET1(x->d)), acc[r]);
      if (type == T_Q4_1) acc[r] = VF_FMA(VF_LOAD(t->m + b * LANES), VF_SET1(x->d * (float)x->sum), acc[r]);
    }
  }
}
#else
// RM input rows against one tile: RM x LANES outputs, each input row's 4-value groups broadcast.
// Two integer accumulators a row keep the VNNI chains independent.
static inline __attribute__((always_inline)) void tile_rows(int type, const tile *t, const act_block *xq, int64_t nb, int rm,
                                                            vf *acc) {
  for (int r = 0; r < rm; r++) acc[r] = VF_ZERO();
  for (int64_t b = 0; b < nb; b++) {
    const vi *v = t->vals + b * 8;
    const vi off = VI_LOAD(t->offset + b * LANES);
    const vf d = VF_LOAD(t->d + b * LANES);
    for (int r = 0; r < rm; r++) {
      const act_block *x = xq + r * nb + b;
      vi a0 = type == T_Q8_0 ? off : VI_MUL(off, VI_SET1(-x->sum)), a1 = VI_ZERO();
      for (int g = 0; g < 8; g += 2) {
        if (type == T_Q8_0) {
          a0 = VI_DP(a0, VI_SET1(word(x->q + 4 * g)), v[g]);
          a1 = VI_DP(a1, VI_SET1(word(x->q + 4 * g + 4)), v[g + 1]);
        } else {
          a0 = VI_DP(a0, v[g], VI_SET1(word(x->q + 4 * g)));
          a1 = VI_DP(a1, v[g + 1], VI_SET1(word(x->q + 4 * g + 4)));
        }
      }
      acc[r] = VF_FMA(VF_CVT(VI_ADD(a0, a1)), VF_MUL(d, VF_SET1(x->d)), acc[r]);
      if (type == T_Q4_1) acc[r] = VF_FMA(VF_LOAD(t->m + b * LANES), VF_SET1(x->d * (float)x->sum), acc[r]);
    }
  }
}
#endif

static void store_lanes(float *dst, vf v, int valid) {
  if (valid == LANES) {
    VF_STOREU(dst, v);
    return;
  }
  float tmp[LANES];
  VF_STOREU(tmp, v);
  memcpy(dst, tmp, sizeof(float) * (size_t)valid);
}

// Each type its own instance of the row loop, so the type tests above fold away.
#define RUN_ROWS(TYPE)                                                                       \
  for (int64_t r = 0; r < rows; r += 4) {                                                   \
    const int rm = rows - r < 4 ? (int)(rows - r) : 4;                                       \
    vf acc[4];                                                                               \
    if (rm == 4) tile_rows(TYPE, &t, xq + r * nb, nb, 4, acc);                               \
    else                                                                                     \
      for (int i = 0; i < rm; i++) tile_rows(TYPE, &t, xq + (r + i) * nb, nb, 1, acc + i);   \
    for (int i = 0; i < rm; i++) store_lanes(out + (r + i) * n + j, acc[i], valid);          \
  }

int int8_gemm_lanes(void) { return LANES; }

void int8_gemm_input(int type, act_block *xq, int64_t blocks) {
#ifdef PAIRS_IN_INT16
  (void)type, (void)xq, (void)blocks;
#else
  if (type != T_Q8_0) return;
  for (int64_t i = 0; i < blocks; i++)
    for (int e = 0; e < 32; e++) xq[i].q[e] = (int8_t)((uint8_t)xq[i].q[e] ^ 0x80);
#endif
}

int int8_gemm(int type, const uint8_t *w, size_t rb, const act_block *xq, int64_t rows, int64_t nb, int64_t n, int64_t j0,
              int64_t j1, float *out) {
  const size_t lanes = (size_t)nb * LANES;
  tile t = {alloc64(sizeof(vi) * (size_t)nb * 8), alloc64(sizeof(int32_t) * lanes), alloc64(sizeof(float) * lanes),
            alloc64(sizeof(float) * lanes)};
  int ok = t.vals && t.offset && t.d && t.m;
  for (int64_t j = j0; ok && j < j1; j += LANES) {
    const int valid = j1 - j < LANES ? (int)(j1 - j) : LANES;
    pack_tile(type, w, rb, j, valid, nb, &t);
    switch (type) {
      case T_Q8_0: RUN_ROWS(T_Q8_0) break;
      case T_Q4_0: RUN_ROWS(T_Q4_0) break;
      case T_Q4_1: RUN_ROWS(T_Q4_1) break;
      default: RUN_ROWS(T_Q4_Z) break;
    }
  }
  free(t.vals);
  free(t.offset);
  free(t.d);
  free(t.m);
  return ok;
}
#else
int int8_gemm_lanes(void) { return 0; }
void int8_gemm_input(int type, act_block *xq, int64_t blocks) { (void)type, (void)xq, (void)blocks; }
int int8_gemm(int type, const uint8_t *w, size_t rb, const act_block *xq, int64_t rows, int64_t nb, int64_t n, int64_t j0,
              int64_t j1, float *out) {
  (void)type, (void)w, (void)rb, (void)xq, (void)rows, (void)nb, (void)n, (void)j0, (void)j1, (void)out;
  return 0;
}
#endif
