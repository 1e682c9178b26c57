// llmbox native kernels: BLAS-backed matrix products that run directly on the tfjs-wasm heap.
//
// tfjs-wasm keeps every tensor in one WebAssembly.Memory. Its Float32Array view (HEAPF32) is passed
// in on each call and tensors are addressed by element offsets into it, so no data is copied between
// JavaScript, wasm and BLAS. The view must be re-read on every call: the heap is replaced when wasm
// memory grows.
#define NAPI_VERSION 8
#include <node_api.h>
#include <cblas.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <math.h>
#include <stdlib.h>
#include <stdbool.h>
#include "finite.h"
#include "huge_alloc.h"
#include "map_file.h"
#include "pool.h"
#include "quant.h"

#define CHECK(call)                                                           \
  do {                                                                        \
    if ((call) != napi_ok) {                                                  \
      napi_throw_error(env, NULL, "llmbox_native: N-API call failed: " #call); \
      return NULL;                                                            \
    }                                                                         \
  } while (0)

// A typed array's data pointer and length, if it has the expected element type (else a TypeError).
static int get_view(napi_env env, napi_value v, napi_typedarray_type want, const char *what, void **data, size_t *len) {
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(env, v, &type, len, data, &ab, &off) != napi_ok || type != want) {
    char msg[96];
    snprintf(msg, sizeof msg, "llmbox_native: expected %s", what);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  return 1;
}

static int get_f32_view(napi_env env, napi_value v, float **data, size_t *len) {
  return get_view(env, v, napi_float32_array, "a Float32Array heap view", (void **)data, len);
}

static int get_i32_view(napi_env env, napi_value v, int32_t **data, size_t *len) {
  return get_view(env, v, napi_int32_array, "an Int32Array of offsets", (void **)data, len);
}

static int64_t get_i64(napi_env env, napi_value v) {
  int64_t x = 0;
  napi_get_value_int64(env, v, &x);
  return x;
}

// Reads the arguments of the element-wise kernels: the heap view, then `n` integers (offsets, sizes).
#define MAX_INT_ARGS 8
static int read_kernel_args(napi_env env, napi_callback_info info, const char *name, size_t n, float **heap, int64_t *out) {
  napi_value argv[MAX_INT_ARGS + 1];
  size_t argc = n + 1, heapLen;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < n + 1) {
    char msg[96];
    snprintf(msg, sizeof msg, "llmbox_native.%s: expected %zu arguments", name, n + 1);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  if (!get_f32_view(env, argv[0], heap, &heapLen)) return 0;
  for (size_t i = 0; i < n; i++) out[i] = get_i64(env, argv[i + 1]);
  return 1;
}

// Reads the arguments of the kernels over weights kept outside the heap: the heap view, the weights
// (a Uint8Array), then `n` integers (the weights' type first).
static int read_weight_args(napi_env env, napi_callback_info info, const char *name, size_t n, float **heap, size_t *heapLen,
                            uint8_t **w, size_t *wLen, int64_t *out) {
  napi_value argv[MAX_INT_ARGS + 2];
  size_t argc = n + 2;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < n + 2) {
    char msg[96];
    snprintf(msg, sizeof msg, "llmbox_native.%s: expected %zu arguments", name, n + 2);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  if (!get_f32_view(env, argv[0], heap, heapLen)) return 0;
  if (!get_view(env, argv[1], napi_uint8_array, "a Uint8Array of weights", (void **)w, wLen)) return 0;
  for (size_t i = 0; i < n; i++) out[i] = get_i64(env, argv[i + 2]);
  return 1;
}

typedef void (*set_threads_fn)(int);
typedef char *(*get_config_fn)(void);

// Threads asked for by the user, and the count the BLAS pool is set to now.
static int configured_threads = 1, active_threads = -1;
static set_threads_fn blas_set_threads = NULL;

// Small products and single rows (decoding) run on one thread: waking the pool, and its workers
// spinning afterwards beside the wasm thread, cost more than they save there (measured on 2 cores:
// a LLaMA decode step took 5.0-5.5 ms with 2 BLAS threads and 3.8-4.7 ms with one).
#define SMALL_WORK (1 << 20)

static void use_threads(int n) {
  if (n == active_threads || !blas_set_threads) return;
  blas_set_threads(n);
  active_threads = n;
}

// c[1 x n] = a[1 x k] * op(B) for small B, where OpenBLAS's per-call set-up costs more than the
// arithmetic (measured: a 288x288 GEMV took 40 us in OpenBLAS, 19 us in tfjs-wasm's XNNPACK).
static void small_gemv(const float *a, const float *b, float *c, int n, int k, bool tb) {
  if (tb) {
    for (int j = 0; j < n; j++) {
      const float *row = b + (size_t)j * k;
      float s = 0.f;
#pragma omp simd reduction(+ : s)
      for (int q = 0; q < k; q++) s += a[q] * row[q];
      c[j] = s;
    }
  } else {
    memset(c, 0, sizeof(float) * (size_t)n);
    for (int q = 0; q < k; q++) {
      const float *row = b + (size_t)q * n;
      const float aq = a[q];
#pragma omp simd
      for (int j = 0; j < n; j++) c[j] += aq * row[j];
    }
  }
}

// batchMatMul(heap, aOffsets, bOffsets, cOffset, m, n, k, transA, transB)
// For each batch i: C[i] (m x n, row-major, contiguous from cOffset) = op(A[i]) * op(B[i]).
// Offsets are per batch so that any broadcasting of batch dimensions is resolved by the caller.
static napi_value BatchMatMul(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 9) {
    napi_throw_type_error(env, NULL, "llmbox_native.batchMatMul: expected 9 arguments");
    return NULL;
  }
  float *heap;
  size_t heapLen, nbA, nbB;
  int32_t *offA, *offB;
  if (!get_f32_view(env, argv[0], &heap, &heapLen)) return NULL;
  if (!get_i32_view(env, argv[1], &offA, &nbA)) return NULL;
  if (!get_i32_view(env, argv[2], &offB, &nbB)) return NULL;
  int64_t offC = get_i64(env, argv[3]);
  int m = (int)get_i64(env, argv[4]), n = (int)get_i64(env, argv[5]), k = (int)get_i64(env, argv[6]);
  bool ta = false, tb = false;
  napi_get_value_bool(env, argv[7], &ta);
  napi_get_value_bool(env, argv[8], &tb);
  if (nbA != nbB || offC < 0 || (size_t)offC + nbA * (size_t)m * n > heapLen) {
    napi_throw_range_error(env, NULL, "llmbox_native.batchMatMul: offsets out of range");
    return NULL;
  }
  int lda = ta ? m : k, ldb = tb ? k : n;
  use_threads(m == 1 || (double)m * n * k < SMALL_WORK ? 1 : configured_threads);
  for (size_t i = 0; i < nbA; i++) {
    float *c = heap + offC + i * (size_t)m * n;
    if (k == 0) {
      memset(c, 0, sizeof(float) * (size_t)m * n);
      continue;
    }
    if (m == 1) {
      // A single row (decoding): GEMV reads B once, where GEMM would first copy it into packed panels.
      // With m == 1, op(A) is k contiguous values whether or not it is transposed.
      if ((double)n * k < SMALL_WORK) small_gemv(heap + offA[i], heap + offB[i], c, n, k, tb);
      else if (tb) cblas_sgemv(CblasRowMajor, CblasNoTrans, n, k, 1.0f, heap + offB[i], k, heap + offA[i], 1, 0.0f, c, 1);
      else cblas_sgemv(CblasRowMajor, CblasTrans, k, n, 1.0f, heap + offB[i], n, heap + offA[i], 1, 0.0f, c, 1);
      continue;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n, k, 1.0f,
                heap + offA[i], lda, heap + offB[i], ldb, 0.0f, c, n);
  }
  return NULL;
}

static napi_value SetThreads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int n = argc > 0 ? (int)get_i64(env, argv[0]) : 1;
  // OpenBLAS and BLIS name this differently; whichever BLAS was linked answers.
  if (!blas_set_threads) blas_set_threads = (set_threads_fn)dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
  if (!blas_set_threads) blas_set_threads = (set_threads_fn)dlsym(RTLD_DEFAULT, "bli_thread_set_num_threads");
  configured_threads = n < 1 ? 1 : n;
  use_threads(configured_threads);
  return NULL;
}

static napi_value GetThreads(napi_env env, napi_callback_info info) {
  napi_value out;
  CHECK(napi_create_int32(env, configured_threads, &out));
  return out;
}

static napi_value BlasInfo(napi_env env, napi_callback_info info) {
  get_config_fn f = (get_config_fn)dlsym(RTLD_DEFAULT, "openblas_get_config");
  const char *s = f ? f() : "cblas";
  napi_value out;
  CHECK(napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &out));
  return out;
}


// exp(x) for float32 as Cephes computes it (range reduction by ln 2, degree-6 polynomial; about 1 ulp),
// written without calls or branches so that the compiler vectorises the loops that use it.
static inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  float n = floorf(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float y = p * r * r + r + 1.0f;
  int32_t bits = ((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

// softmaxXent(heap, logits, targets(int32 offset), loss, lse, rows, vocab):
// lse[r] = log sum exp(logits[r]), loss[r] = lse[r] - logits[r][target[r]].
static napi_value SoftmaxXent(napi_env env, napi_callback_info info) {
  float *heap;
  int64_t a[6];
  if (!read_kernel_args(env, info, "softmaxXent", 6, &heap, a)) return NULL;
  int64_t xo = a[0], to = a[1], lo = a[2], so = a[3], rows = a[4], vocab = a[5];
  const int32_t *targets = (const int32_t *)(heap + to);
  for (int64_t r = 0; r < rows; r++) {
    const float *x = heap + xo + r * vocab;
    float mx = x[0];
#pragma omp simd reduction(max : mx)
    for (int64_t j = 1; j < vocab; j++) mx = x[j] > mx ? x[j] : mx;
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < vocab; j++) sum += exp_approx(x[j] - mx);
    float lse = mx + logf(sum);
    int32_t t = targets[r];
    heap[so + r] = lse;
    heap[lo + r] = (t >= 0 && t < vocab) ? lse - x[t] : NAN;
  }
  return NULL;
}

// softmaxXentGrad(heap, logits, targets, lse, dy, out, rows, vocab):
// out[r][j] = (softmax(logits[r])[j] - [j == target[r]]) * dy[r].
static napi_value SoftmaxXentGrad(napi_env env, napi_callback_info info) {
  float *heap;
  int64_t a[7];
  if (!read_kernel_args(env, info, "softmaxXentGrad", 7, &heap, a)) return NULL;
  int64_t xo = a[0], to = a[1], so = a[2], dyo = a[3], oo = a[4], rows = a[5], vocab = a[6];
  const int32_t *targets = (const int32_t *)(heap + to);
  for (int64_t r = 0; r < rows; r++) {
    const float *x = heap + xo + r * vocab;
    float *o = heap + oo + r * vocab;
    float lse = heap[so + r], g = heap[dyo + r];
#pragma omp simd
    for (int64_t j = 0; j < vocab; j++) o[j] = exp_approx(x[j] - lse) * g;
    int32_t t = targets[r];
    if (t >= 0 && t < vocab) o[t] -= g;
  }
  return NULL;
}

// embeddingGrad(heap, ids(int32 offset), dy, out, n, dim, vocab): out = zeros(vocab, dim); out[ids[i]] += dy[i].
// tfjs-wasm has no UnsortedSegmentSum, which tfjs uses to differentiate a gather.
static napi_value EmbeddingGrad(napi_env env, napi_callback_info info) {
  float *heap;
  int64_t a[6];
  if (!read_kernel_args(env, info, "embeddingGrad", 6, &heap, a)) return NULL;
  int64_t io = a[0], dyo = a[1], oo = a[2], n = a[3], dim = a[4], vocab = a[5];
  const int32_t *ids = (const int32_t *)(heap + io);
  float *out = heap + oo;
  memset(out, 0, sizeof(float) * (size_t)vocab * dim);
  for (int64_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= vocab) continue;
    float *row = out + (int64_t)ids[i] * dim;
    const float *g = heap + dyo + i * dim;
    for (int64_t j = 0; j < dim; j++) row[j] += g[j];
  }
  return NULL;
}

// rope(heap, x, cos, sin, out, rows, heads, dim): rotate_half RoPE, out = x * cos + swapHalves(x) * sin,
// for x [rows, heads, dim] and per-row tables cos, sin [rows, dim] (sin's first half already negated).
// The gradient is the inverse rotation: the same kernel with sin negated.
static napi_value Rope(napi_env env, napi_callback_info info) {
  float *heap;
  int64_t a[7];
  if (!read_kernel_args(env, info, "rope", 7, &heap, a)) return NULL;
  int64_t xo = a[0], co = a[1], so = a[2], oo = a[3], rows = a[4], heads = a[5], dim = a[6];
  int64_t half = dim / 2;
  for (int64_t r = 0; r < rows; r++) {
    const float *c = heap + co + r * dim, *s = heap + so + r * dim;
    for (int64_t h = 0; h < heads; h++) {
      const float *x = heap + xo + (r * heads + h) * dim;
      float *o = heap + oo + (r * heads + h) * dim;
      for (int64_t i = 0; i < half; i++) {
        float a = x[i], b = x[i + half];
        o[i] = a * c[i] + b * s[i];
        o[i + half] = b * c[i + half] + a * s[i + half];
      }
    }
  }
  return NULL;
}

// ---- Weights in ggml storage types, outside the wasm heap -----------------------------------------
// A weight [n rows x k] (Hugging Face's [out, in]) is kept in a Node buffer in its stored type, so the
// wasm heap holds activations only. The types are quant.h's.

// Bytes of one row of k elements in a type, or 0 for a type this file does not know.
static size_t row_bytes(int type, int64_t k) {
  switch (type) {
    case 0: return (size_t)k * 4;
    case 1: case 30: return (size_t)k * 2;
    case 8: return (size_t)(k / 32) * 34;
    case 2: return (size_t)(k / 32) * 18;
    case 3: case 256: return (size_t)(k / 32) * 20;
    default: return 0;
  }
}

// Decodes one row to float32, exactly as ggml's reference dequantizers do.
static void decode_row(int type, const uint8_t *src, float *dst, int64_t k) {
  switch (type) {
    case 0: memcpy(dst, src, (size_t)k * 4); return;
    case 1: {
      int64_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
      // Eight at a time: one at a time, an f16 decode row took 4.7 ms where this takes 1.1 (5632x2048).
      for (; i + 8 <= k; i += 8) _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * i))));
#endif
      for (; i < k; i++) dst[i] = half_to_float(rd16(src + 2 * i));
      return;
    }
    case 30:
      for (int64_t i = 0; i < k; i++) {
        uint32_t bits = (uint32_t)rd16(src + 2 * i) << 16;
        memcpy(dst + i, &bits, 4);
      }
      return;
    case 8:
      for (int64_t b = 0; b < k / 32; b++) {
        const uint8_t *blk = src + b * 34;
        float d = half_to_float(rd16(blk));
        const int8_t *q = (const int8_t *)(blk + 2);
#pragma omp simd
        for (int j = 0; j < 32; j++) dst[b * 32 + j] = d * (float)q[j];
      }
      return;
    case 2:
      for (int64_t b = 0; b < k / 32; b++) {
        const uint8_t *blk = src + b * 18;
        float d = half_to_float(rd16(blk));
#pragma omp simd
        for (int j = 0; j < 16; j++) {
          dst[b * 32 + j] = (float)((blk[2 + j] & 0x0f) - 8) * d;
          dst[b * 32 + 16 + j] = (float)((blk[2 + j] >> 4) - 8) * d;
        }
      }
      return;
    case 3:
      for (int64_t b = 0; b < k / 32; b++) {
        const uint8_t *blk = src + b * 20;
        float d = half_to_float(rd16(blk)), m = half_to_float(rd16(blk + 2));
#pragma omp simd
        for (int j = 0; j < 16; j++) {
          dst[b * 32 + j] = (float)(blk[4 + j] & 0x0f) * d + m;
          dst[b * 32 + 16 + j] = (float)(blk[4 + j] >> 4) * d + m;
        }
      }
      return;
    case 256:
      for (int64_t b = 0; b < k / 32; b++) {
        const uint8_t *blk = src + b * 20;
        const float d = half_to_float(rd16(blk));
        const int z = blk[2];
#pragma omp simd
        for (int j = 0; j < 16; j++) {
          dst[b * 32 + j] = (float)((blk[4 + j] & 0x0f) - z) * d;
          dst[b * 32 + 16 + j] = (float)((blk[4 + j] >> 4) - z) * d;
        }
      }
      return;
  }
}

// Rows of input from which products go through BLAS on decoded panels of PANEL_ROWS weight rows.
#define PANEL_MIN_ROWS 8
#define PANEL_ROWS 256
// Rows of input from which products with rounding types go through int8_gemm (where compiled in).
#define TILED_MIN_ROWS 4

// Products with q8_0, q4_0 and q4_1 weights take their input rounded to 8 bits per block of 32 (one
// float scale a block), as llama.cpp's quantized dot products do: the weights' integers then multiply
// the input's in integer arithmetic, several times fewer instructions than converting every weight to
// float (which left decoding compute-bound at about half of llama.cpp's speed). Every path rounds the
// input the same way (ops.ts roundActivations is the composed definition), so results do not depend on
// how many rows a call has or on the add-on.
static inline int rounds_input(int type) { return type == T_Q8_0 || type == T_Q4_0 || type == T_Q4_1 || type == T_Q4_Z; }

static void round_input_row(const float *x, act_block *out, int64_t k) {
  for (int64_t b = 0; b < k / 32; b++) {
    const float *xb = x + b * 32;
    float amax = 0.f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(xb[j]));
    const float d = amax / 127.f, id = d != 0.f ? 1.f / d : 0.f;
    int32_t sum = 0;
    for (int j = 0; j < 32; j++) {
      out[b].q[j] = (int8_t)nearbyintf(xb[j] * id);
      sum += out[b].q[j];
    }
    for (int g = 0; g < 8; g++)
      out[b].groups[g] = out[b].q[4 * g] + out[b].q[4 * g + 1] + out[b].q[4 * g + 2] + out[b].q[4 * g + 3];
    out[b].d = d;
    out[b].sum = sum;
  }
}

typedef struct {
  const float *x;
  const act_block *xq; // the rows rounded (rounds_input types), else NULL
  const act_pair *xp;  // and laid out for pair_dot (4-bit decode rows on AVX-512 VNNI), else NULL
  float *out;
  const uint8_t *w;
  int type;
  int64_t rows, n, k, j0, j1;
  size_t rb;
  int tiled; // through int8_gemm (many rows, an AVX2 or AVX-512 CPU)
  int ok;
} qmm_job;

// One input row against q8_0 / q4_0 weight rows, decoding in the dot product itself (decode steps:
// no float copy of the row is stored and read back).
// Dot products for the decode path. With AVX2 and FMA they use intrinsics with independent
// accumulators (the auto-vectorised loops carried one sum, so each fused multiply-add waited 4 cycles
// for the last: 3.5 GMAC/s on one core); elsewhere plain loops the compiler vectorises as it can.
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
static inline float hsum256(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
  return _mm_cvtss_f32(lo);
}

static float dot_f32(const float *a, const float *b, int64_t k) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < k; i++) s += a[i] * b[i];
  return s;
}

#ifdef __F16C__
#define HAS_HALF_DOT 1
static inline float widen1(const uint8_t *p, int bf) {
  if (!bf) return half_to_float(rd16(p));
  const uint32_t bits = (uint32_t)rd16(p) << 16;
  float v;
  memcpy(&v, &bits, 4);
  return v;
}

// out[r * n] = dot(x row r, the stored row w) for R input rows (x rows k apart), f16 (bf = 0) or
// bf16 (bf = 1) widened in registers, each weight once for all R rows: decoding and small batches
// read the weights at memory speed without storing a decoded row. Every row's sum is dot_f32's on
// the row decoded (the same lanes, added in the same order), so results are the same to the bit
// whatever the number of rows.
#ifdef __AVX512F__
#define HALF_ROWS 7
static inline __attribute__((always_inline)) __m512 widen16(const uint8_t *p, int bf) {
  const __m256i h = _mm256_loadu_si256((const __m256i *)p);
  return bf ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)) : _mm512_cvtph_ps(h);
}

// A row's two sixteen-lane sums added as dot_f32 adds its four eight-lane ones, then the scalar tail from i.
static inline __attribute__((always_inline)) float half_sum(__m512 lo, __m512 hi, const float *x, const uint8_t *w,
                                                           int64_t i, int64_t k, int bf) {
  const __m256 s0 = _mm512_castps512_ps256(lo), s1 = _mm512_extractf32x8_ps(lo, 1);
  const __m256 s2 = _mm512_castps512_ps256(hi), s3 = _mm512_extractf32x8_ps(hi, 1);
  float s = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < k; i++) s += x[i] * widen1(w + 2 * i, bf);
  return s;
}

static inline __attribute__((always_inline)) void dot_half_rows(const float *x, int64_t k, const uint8_t *w, int bf, int R,
                                                                float *out, int64_t n) {
  // Sixteen lanes: the lanes of two of dot_f32's eight-lane sums each.
  __m512 lo[HALF_ROWS], hi[HALF_ROWS];
  for (int r = 0; r < R; r++) lo[r] = hi[r] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    const __m512 w0 = widen16(w + 2 * i, bf), w1 = widen16(w + 2 * i + 32, bf);
    for (int r = 0; r < R; r++) {
      lo[r] = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * k + i), w0, lo[r]);
      hi[r] = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * k + i + 16), w1, hi[r]);
    }
  }
  for (int r = 0; r < R; r++) out[r * n] = half_sum(lo[r], hi[r], x + r * k, w, i, k, bf);
}

// One input row against HALF_GROUP stored rows (rb bytes apart), k taken HALF_CHUNK values at a
// time for all of them: a long row's input (LLaMA-2 7B's down projection: 11008 floats, 43 KB) does
// not stay in L1 beside the weights streaming through, and one f16 row from L3 fell from 44 GB/s at
// k = 2048 to 32 at k = 11264 (38-42 this way; at k = 2048 it was no faster). Each row's sums still run
// over i in dot_half_rows' order: the same bits.
#define HALF_CHUNK 512
#define HALF_GROUP_MIN_K 4096
#define HALF_GROUP 4
static inline __attribute__((always_inline)) void dot_half_group(const float *x, int64_t k, const uint8_t *w, size_t rb, int bf,
                                                                 float *out) {
  __m512 lo[HALF_GROUP], hi[HALF_GROUP];
  for (int m = 0; m < HALF_GROUP; m++) lo[m] = hi[m] = _mm512_setzero_ps();
  const int64_t body = k & ~(int64_t)31;
  for (int64_t c = 0; c < body; c += HALF_CHUNK) {
    const int64_t e = c + HALF_CHUNK < body ? c + HALF_CHUNK : body;
    for (int m = 0; m < HALF_GROUP; m++) {
      const uint8_t *wm = w + (size_t)m * rb;
      __m512 l = lo[m], h = hi[m];
      for (int64_t i = c; i < e; i += 32) {
        l = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), widen16(wm + 2 * i, bf), l);
        h = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), widen16(wm + 2 * i + 32, bf), h);
      }
      lo[m] = l;
      hi[m] = h;
    }
  }
  for (int m = 0; m < HALF_GROUP; m++) out[m] = half_sum(lo[m], hi[m], x, w + (size_t)m * rb, body, k, bf);
}

// dot_half_rows for two stored rows at once (w, and w + rb), R <= 6: each row of x read from cache
// once for both, where it was read once per weight row (bound by those reads at 2-7 rows).
#define HALF_PAIR_ROWS 6
static inline __attribute__((always_inline)) void dot_half_rows2(const float *x, int64_t k, const uint8_t *w, size_t rb, int bf,
                                                                 int R, float *out, int64_t n) {
  __m512 lo0[HALF_PAIR_ROWS], hi0[HALF_PAIR_ROWS], lo1[HALF_PAIR_ROWS], hi1[HALF_PAIR_ROWS];
  for (int r = 0; r < R; r++) lo0[r] = hi0[r] = lo1[r] = hi1[r] = _mm512_setzero_ps();
  const uint8_t *v = w + rb;
  int64_t i = 0;
  for (; i + 32 <= k; i += 32) {
    const __m512 w0 = widen16(w + 2 * i, bf), w1 = widen16(w + 2 * i + 32, bf);
    const __m512 v0 = widen16(v + 2 * i, bf), v1 = widen16(v + 2 * i + 32, bf);
    for (int r = 0; r < R; r++) {
      const __m512 x0 = _mm512_loadu_ps(x + r * k + i), x1 = _mm512_loadu_ps(x + r * k + i + 16);
      lo0[r] = _mm512_fmadd_ps(x0, w0, lo0[r]);
      hi0[r] = _mm512_fmadd_ps(x1, w1, hi0[r]);
      lo1[r] = _mm512_fmadd_ps(x0, v0, lo1[r]);
      hi1[r] = _mm512_fmadd_ps(x1, v1, hi1[r]);
    }
  }
  for (int r = 0; r < R; r++) {
    out[r * n] = half_sum(lo0[r], hi0[r], x + r * k, w, i, k, bf);
    out[r * n + 1] = half_sum(lo1[r], hi1[r], x + r * k, v, i, k, bf);
  }
}
#else
#define HALF_ROWS 3
#define HALF_PAIR_ROWS 0
#define HALF_GROUP 0
static inline __attribute__((always_inline)) __m256 widen8(const uint8_t *p, int bf) {
  const __m128i h = _mm_loadu_si128((const __m128i *)p);
  return bf ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)) : _mm256_cvtph_ps(h);
}

static inline __attribute__((always_inline)) void dot_half_rows(const float *x, int64_t k, const uint8_t *w, int bf, int R,
                                                                float *out, int64_t n) {
  __m256 acc[HALF_ROWS][4];
  for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= k; i += 32)
    for (int c = 0; c < 4; c++) {
      const __m256 wc = widen8(w + 2 * i + 16 * c, bf);
      for (int r = 0; r < R; r++) acc[r][c] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * k + i + 8 * c), wc, acc[r][c]);
    }
  for (int r = 0; r < R; r++) {
    float s = hsum256(_mm256_add_ps(_mm256_add_ps(acc[r][0], acc[r][1]), _mm256_add_ps(acc[r][2], acc[r][3])));
    for (int64_t q = i; q < k; q++) s += x[r * k + q] * widen1(w + 2 * q, bf);
    out[r * n] = s;
  }
}
#endif

// Weight rows j0..j1 against R input rows, R a constant where this is inlined.
static inline __attribute__((always_inline)) void half_rows_run(const qmm_job *t, int R) {
  int64_t j = t->j0;
#if HALF_GROUP
  if (R == 1 && t->k > HALF_GROUP_MIN_K)
    for (; j + HALF_GROUP <= t->j1; j += HALF_GROUP) {
      const uint8_t *wr = t->w + (size_t)j * t->rb;
      if (t->type == T_BF16) dot_half_group(t->x, t->k, wr, t->rb, 1, t->out + j);
      else dot_half_group(t->x, t->k, wr, t->rb, 0, t->out + j);
    }
#endif
#if HALF_PAIR_ROWS
  if (R >= 2 && R <= HALF_PAIR_ROWS)
    for (; j + 2 <= t->j1; j += 2) {
      const uint8_t *wr = t->w + (size_t)j * t->rb;
      if (t->type == T_BF16) dot_half_rows2(t->x, t->k, wr, t->rb, 1, R, t->out + j, t->n);
      else dot_half_rows2(t->x, t->k, wr, t->rb, 0, R, t->out + j, t->n);
    }
#endif
  for (; j < t->j1; j++) {
    const uint8_t *wr = t->w + (size_t)j * t->rb;
    if (t->type == T_BF16) dot_half_rows(t->x, t->k, wr, 1, R, t->out + j, t->n);
    else dot_half_rows(t->x, t->k, wr, 0, R, t->out + j, t->n);
  }
}
#endif

// Eight int32 sums of products of signed bytes, as floats (maddubs takes unsigned x signed: the sign
// moves onto y). Pairs stay within int16: |x| <= 128, |y| <= 127.
static inline __m256 dot_i8_pairs(__m256i x, __m256i y) {
  const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

static inline __m256 dot_u8_i8(__m256i x, __m256i y) {
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1)));
}

// A 4-bit block's 16 bytes as 32 values: low nibbles are elements 0-15, high nibbles 16-31.
static inline __m256i nibbles(const uint8_t *p) {
  const __m128i t = _mm_loadu_si128((const __m128i *)p);
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0f));
}

// One block's contribution to an accumulator: the integer dot, scaled by both blocks' scales.
static inline __m256 q8_0_block(const uint8_t *blk, const act_block *x, __m256 acc) {
  const __m256 s = dot_i8_pairs(_mm256_loadu_si256((const __m256i *)(blk + 2)), _mm256_loadu_si256((const __m256i *)x->q));
  return _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(rd16(blk)) * x->d), s, acc);
}

// A 4-bit block whose values are nibble - zero (q4_0: 8; q4_z: the block's own byte at `zero_at`):
// the nibbles multiply as unsigned bytes, and zero times the input's group sums comes off each lane
// in integers (fewer instructions than moving the sign onto the input; a scalar float offset per
// block had made a dependency chain: 7% of a one-thread q4_0 decode). `qs` is where the nibbles start.
static inline __attribute__((always_inline)) __m256 q4_zero_block(const uint8_t *blk, const act_block *x, __m256 acc,
                                                                   int qs, int zero_at) {
  const __m256i groups = _mm256_loadu_si256((const __m256i *)x->groups);
  const __m256i zero = zero_at ? _mm256_mullo_epi32(groups, _mm256_set1_epi32(blk[zero_at])) : _mm256_slli_epi32(groups, 3);
  const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(nibbles(blk + qs), _mm256_loadu_si256((const __m256i *)x->q)),
                                      _mm256_set1_epi16(1));
  const __m256 s = _mm256_cvtepi32_ps(_mm256_sub_epi32(p, zero));
  return _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(rd16(blk)) * x->d), s, acc);
}

// Two blocks a step into two accumulators, so that neither multiply-add waits on the other.
static float idot_q8_0(const uint8_t *w, const act_block *x, int64_t nb) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const uint8_t *blk = w + b * 34;
    _mm_prefetch((const char *)(blk + 34 * 512), _MM_HINT_T0);
    acc0 = q8_0_block(blk, x + b, acc0);
    acc1 = q8_0_block(blk + 34, x + b + 1, acc1);
  }
  if (b < nb) acc0 = q8_0_block(w + b * 34, x + b, acc0);
  return hsum256(_mm256_add_ps(acc0, acc1));
}

// q4_0 (18-byte blocks) and q4_z (20-byte blocks), each specialised by the constants below.
static inline __attribute__((always_inline)) float idot_q4_zero(const uint8_t *w, const act_block *x, int64_t nb,
                                                                 int stride, int qs, int zero_at) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const uint8_t *blk = w + b * stride;
    _mm_prefetch((const char *)(blk + stride * 1024), _MM_HINT_T0);
    acc0 = q4_zero_block(blk, x + b, acc0, qs, zero_at);
    acc1 = q4_zero_block(blk + stride, x + b + 1, acc1, qs, zero_at);
  }
  if (b < nb) acc0 = q4_zero_block(w + b * stride, x + b, acc0, qs, zero_at);
  return hsum256(_mm256_add_ps(acc0, acc1));
}

// q4_1: w = d q + m, so a block's dot is d dx sum(q qx) + m dx sum(qx).
static float idot_q4_1(const uint8_t *w, const act_block *x, int64_t nb) {
  __m256 acc = _mm256_setzero_ps();
  float mins = 0.f;
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *blk = w + b * 20;
    _mm_prefetch((const char *)(blk + 20 * 1024), _MM_HINT_T0);
    const __m256 s = dot_u8_i8(nibbles(blk + 4), _mm256_loadu_si256((const __m256i *)x[b].q));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(rd16(blk)) * x[b].d), s, acc);
    mins += half_to_float(rd16(blk + 2)) * x[b].d * (float)x[b].sum;
  }
  return hsum256(acc) + mins;
}
#else
static float idot_q8_0(const uint8_t *w, const act_block *x, int64_t nb) {
  float s = 0.f;
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *blk = w + b * 34;
    const int8_t *q = (const int8_t *)(blk + 2);
    int32_t acc = 0;
    for (int j = 0; j < 32; j++) acc += q[j] * x[b].q[j];
    s += half_to_float(rd16(blk)) * x[b].d * (float)acc;
  }
  return s;
}

// Sum of a 4-bit block's unsigned nibbles (low: elements 0-15, high: 16-31) times the rounded input.
static int32_t nibble_dot(const uint8_t *qs, const int8_t *q) {
  int32_t acc = 0;
  for (int j = 0; j < 16; j++) acc += (qs[j] & 0x0f) * q[j] + (qs[j] >> 4) * q[16 + j];
  return acc;
}

// As the AVX2 versions: q4_0 is nibble - 8 (8 sum(qx) off), q4_1 is d nibble + m (m dx sum(qx) on),
// q4_z is nibble - z.
static inline float idot_q4_zero(const uint8_t *w, const act_block *x, int64_t nb, int stride, int qs, int zero_at) {
  float s = 0.f;
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *blk = w + b * stride;
    s += half_to_float(rd16(blk)) * x[b].d * (float)(nibble_dot(blk + qs, x[b].q) - (zero_at ? blk[zero_at] : 8) * x[b].sum);
  }
  return s;
}

static float idot_q4_1(const uint8_t *w, const act_block *x, int64_t nb) {
  float s = 0.f;
  for (int64_t b = 0; b < nb; b++) {
    const uint8_t *blk = w + b * 20;
    s += half_to_float(rd16(blk)) * x[b].d * (float)nibble_dot(blk + 4, x[b].q) +
         half_to_float(rd16(blk + 2)) * x[b].d * (float)x[b].sum;
  }
  return s;
}

static float dot_f32(const float *a, const float *b, int64_t k) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < k; i++) s += a[i] * b[i];
  return s;
}

#endif

static float idot_q4_0(const uint8_t *w, const act_block *x, int64_t nb) { return idot_q4_zero(w, x, nb, 18, 2, 0); }
static float idot_q4_z(const uint8_t *w, const act_block *x, int64_t nb) { return idot_q4_zero(w, x, nb, 20, 4, 2); }

// A buffer of at least `bytes` owned by the calling thread, kept for its next call: allocating one
// per product (several megabytes for a panel) cost page faults on every call.
static float *thread_scratch(size_t bytes) {
  static _Thread_local float *buf = NULL;
  static _Thread_local size_t cap = 0;
  if (bytes > cap) {
    free(buf);
    buf = (float *)malloc(bytes);
    cap = buf ? bytes : 0;
  }
  return buf;
}

// The weights are read once per call (decoding is memory-bound), whatever the number of rows: each
// weight row is dotted with every input row while it is in L1. Quantized rows dot their blocks with
// the rounded input in integers; the float types decode each row once into a buffer (or, for a
// few f16/bf16 rows, dot the stored values directly).
static void *qmm_run(void *arg) {
  qmm_job *t = (qmm_job *)arg;
  if (t->tiled) {
    t->ok = int8_gemm(t->type, t->w, t->rb, t->xq, t->rows, t->k / 32, t->n, t->j0, t->j1, t->out);
    return NULL;
  }
  if (t->xq) {
    const int64_t nb = t->k / 32;
    const size_t pair_row = pair_input_bytes(nb);
    for (int64_t j = t->j0; j < t->j1; j++) {
      const uint8_t *wr = t->w + (size_t)j * t->rb;
      for (int64_t r = 0; r < t->rows; r++) {
        const act_block *xr = t->xq + r * nb;
        t->out[r * t->n + j] = t->xp          ? pair_dot(t->type, wr, (const act_pair *)((const char *)t->xp + r * pair_row), nb)
                               : t->type == 8   ? idot_q8_0(wr, xr, nb)
                               : t->type == 2 ? idot_q4_0(wr, xr, nb)
                               : t->type == 3 ? idot_q4_1(wr, xr, nb)
                                              : idot_q4_z(wr, xr, nb);
      }
    }
    return NULL;
  }
#ifdef HAS_HALF_DOT
  if (t->rows <= HALF_ROWS && (t->type == T_F16 || t->type == T_BF16)) {
    switch (t->rows) {
      case 1: half_rows_run(t, 1); break;
      case 2: half_rows_run(t, 2); break;
      case 3: half_rows_run(t, 3); break;
#if HALF_ROWS > 3
      case 4: half_rows_run(t, 4); break;
      case 5: half_rows_run(t, 5); break;
      case 6: half_rows_run(t, 6); break;
      case 7: half_rows_run(t, 7); break;
#endif
    }
    return NULL;
  }
#endif
  float *row = thread_scratch(sizeof(float) * (size_t)t->k);
  if (!row) {
    t->ok = 0;
    return NULL;
  }
  for (int64_t j = t->j0; j < t->j1; j++) {
    decode_row(t->type, t->w + (size_t)j * t->rb, row, t->k);
    for (int64_t r = 0; r < t->rows; r++) t->out[r * t->n + j] = dot_f32(t->x + r * t->k, row, t->k);
  }
  return NULL;
}

typedef struct {
  const float *x; // the input, rounded where the type rounds it
  float *out;
  const uint8_t *w;
  int type;
  int64_t rows, n, k, j0, j1;
  size_t rb;
  int ok;
} panel_job;

// Weight rows j0..j1 decoded a panel at a time and multiplied by BLAS on this thread. Each of the
// pool's threads takes its own rows: decoding was serial before a multi-threaded GEMM, which left
// f16 prefill at 0.39x llama.cpp's.
static void *panel_run(void *arg) {
  panel_job *t = (panel_job *)arg;
  float *panel = thread_scratch(sizeof(float) * (size_t)PANEL_ROWS * (size_t)t->k);
  if (!panel) {
    t->ok = 0;
    return NULL;
  }
  for (int64_t j = t->j0; j < t->j1; j += PANEL_ROWS) {
    const int64_t jn = t->j1 - j < PANEL_ROWS ? t->j1 - j : PANEL_ROWS;
    for (int64_t r = 0; r < jn; r++) decode_row(t->type, t->w + (size_t)(j + r) * t->rb, panel + r * t->k, t->k);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)t->rows, (int)jn, (int)t->k, 1.0f, t->x, (int)t->k, panel,
                (int)t->k, 0.0f, t->out + j, (int)t->n);
  }
  return NULL;
}

// A call's work goes to the pool as four tasks a thread (at most MAX_TASKS), taken by whichever
// thread is free: a thread the system has not scheduled then delays a quarter of its share, not the
// call (pool.c).
#define MAX_TASKS 64
static int tasks_for(int threads) { return threads <= 1 ? 1 : threads * 4 > MAX_TASKS ? MAX_TASKS : threads * 4; }

// Splits n weight rows over `tasks` jobs, each starting on a multiple of `align`.
static void split_rows(int64_t n, int tasks, int64_t align, int64_t *j0, int64_t *j1, int t) {
  const int64_t units = (n + align - 1) / align;
  *j0 = units * t / tasks * align;
  *j1 = t + 1 == tasks ? n : units * (t + 1) / tasks * align;
}

// The optional input order of a quantMatMul call (its 9th argument, an Int32Array or null/undefined):
// W's column c multiplies x's column order[c] (GPTQ's act-order, stored sorted by group). Returns 0
// with an exception pending when the argument is bad; *order stays NULL when there is none.
static int read_input_order(napi_env env, napi_callback_info info, int type, int64_t k, int32_t **order) {
  size_t argc = 9;
  napi_value argv[9];
  *order = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 9) return 1;
  napi_valuetype t;
  if (napi_typeof(env, argv[8], &t) != napi_ok || t == napi_undefined || t == napi_null) return 1;
  size_t len;
  if (!get_view(env, argv[8], napi_int32_array, "an Int32Array input order", (void **)order, &len)) return 0;
  int ok = (int64_t)len == k && rounds_input(type);
  for (int64_t c = 0; ok && c < k; c++) ok = (*order)[c] >= 0 && (*order)[c] < k;
  if (!ok) napi_throw_range_error(env, NULL, "llmbox_native.quantMatMul: the input order is not k column numbers of a rounding type");
  return ok;
}

// quantMatMul(heap, weights(Uint8Array), type, x, out, rows, n, k[, order]): out[rows x n] = x[rows x k] W^T
// for W [n x k] stored in `type`. Large products split W's rows over the configured threads.
static napi_value QuantMatMul(napi_env env, napi_callback_info info) {
  float *heap;
  size_t heapLen, wLen;
  uint8_t *w;
  int64_t a[6];
  if (!read_weight_args(env, info, "quantMatMul", 6, &heap, &heapLen, &w, &wLen, a)) return NULL;
  int type = (int)a[0];
  int64_t xo = a[1], oo = a[2], rows = a[3], n = a[4], k = a[5];
  size_t rb = row_bytes(type, k);
  if (rb == 0 || (type != 0 && type != 1 && type != 30 && k % 32) || rb * (size_t)n != wLen) {
    napi_throw_range_error(env, NULL, "llmbox_native.quantMatMul: weights do not match their type and shape");
    return NULL;
  }
  if (xo < 0 || oo < 0 || (size_t)(xo + rows * k) > heapLen || (size_t)(oo + rows * n) > heapLen) {
    napi_throw_range_error(env, NULL, "llmbox_native.quantMatMul: offsets out of range");
    return NULL;
  }
  int32_t *order;
  if (!read_input_order(env, info, type, k, &order)) return NULL;
  const int64_t nb = k / 32;
  act_block *xq = NULL;
  if (rounds_input(type)) {
    xq = (act_block *)malloc(sizeof(act_block) * (size_t)(rows * nb));
    float *gathered = order ? (float *)malloc(sizeof(float) * (size_t)k) : NULL;
    if (!xq || (order && !gathered)) {
      free(xq);
      napi_throw_error(env, NULL, "llmbox_native.quantMatMul: out of memory");
      return NULL;
    }
    for (int64_t r = 0; r < rows; r++) {
      const float *x = heap + xo + r * k;
      if (order) {
        for (int64_t c = 0; c < k; c++) gathered[c] = x[order[c]];
        x = gathered;
      }
      round_input_row(x, xq + r * nb, k);
    }
    free(gathered);
  }
  // Several rows with AVX2 or AVX-512: integer tiles (int8_gemm.c), 2-8x the speed of the paths below.
  const int lanes = xq && rows >= TILED_MIN_ROWS ? int8_gemm_lanes() : 0;
  if (lanes) int8_gemm_input(type, xq, rows * nb);
  // Fewer 4-bit rows on AVX-512 VNNI: two blocks a vector (pair_dot.c).
  act_pair *xp = NULL;
  if (xq && !lanes && rows < PANEL_MIN_ROWS && type != T_Q8_0 && pair_dot_enabled()) {
    const size_t row = pair_input_bytes(nb);
    xp = (act_pair *)aligned_alloc(64, row * (size_t)rows);
    if (!xp) {
      free(xq);
      napi_throw_error(env, NULL, "llmbox_native.quantMatMul: out of memory");
      return NULL;
    }
    for (int64_t r = 0; r < rows; r++) pair_input(type, xq + r * nb, nb, (act_pair *)((char *)xp + r * row));
  }
  // Many rows (prefill, scoring) otherwise: decode panels of weight rows to float32 and let BLAS multiply,
  // which reuses each decoded weight across the rows far better than one dot product per pair. The
  // rounded input goes in as floats (q d), the values the integer path multiplies.
  const int threads = (double)rows * n * k < 4.0 * SMALL_WORK || n < 64 ? 1 : configured_threads,
            tasks = tasks_for(threads);
  if (!lanes && rows >= PANEL_MIN_ROWS) {
    float *xr = xq ? (float *)malloc(sizeof(float) * (size_t)(rows * k)) : NULL;
    if (xq && !xr) {
      free(xq);
      napi_throw_error(env, NULL, "llmbox_native.quantMatMul: out of memory");
      return NULL;
    }
    if (xq)
      for (int64_t i = 0; i < rows * nb; i++)
        for (int j = 0; j < 32; j++) xr[i * 32 + j] = (float)xq[i].q[j] * xq[i].d;
    // BLAS on one thread inside each of the pool's: two pools on two cores would fight.
    use_threads(1);
    panel_job pjobs[MAX_TASKS];
    for (int t = 0; t < tasks; t++) {
      pjobs[t] = (panel_job){xr ? xr : heap + xo, heap + oo, w, type, rows, n, k, 0, 0, rb, 1};
      split_rows(n, tasks, PANEL_ROWS, &pjobs[t].j0, &pjobs[t].j1, t);
    }
    pool_run(panel_run, pjobs, sizeof pjobs[0], tasks, threads);
    int ok = 1;
    for (int t = 0; t < tasks; t++) ok &= pjobs[t].ok;
    free(xr);
    free(xq);
    if (!ok) napi_throw_error(env, NULL, "llmbox_native.quantMatMul: out of memory");
    return NULL;
  }
  qmm_job jobs[MAX_TASKS];
  // Tiled jobs start on a tile boundary.
  for (int t = 0; t < tasks; t++) {
    jobs[t] = (qmm_job){heap + xo, xq, xp, heap + oo, w, type, rows, n, k, 0, 0, rb, lanes != 0, 1};
    split_rows(n, tasks, lanes ? lanes : 1, &jobs[t].j0, &jobs[t].j1, t);
  }
  pool_run(qmm_run, jobs, sizeof jobs[0], tasks, threads);
  int ok = 1;
  for (int t = 0; t < tasks; t++) ok &= jobs[t].ok;
  free(xp);
  free(xq);
  if (!ok) napi_throw_error(env, NULL, "llmbox_native.quantMatMul: out of memory");
  return NULL;
}

// rmsNorm(heap, x, w, out, rows, dim, eps): out = x / sqrt(mean(x^2) + eps) * w, per row. One kernel
// where the composed form is six (square, mean, add, rsqrt, two multiplies): on tiny models the
// per-kernel cost, not the arithmetic, is the time.
static napi_value RmsNorm(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 7) {
    napi_throw_type_error(env, NULL, "llmbox_native.rmsNorm: expected 7 arguments");
    return NULL;
  }
  float *heap;
  size_t heapLen;
  if (!get_f32_view(env, argv[0], &heap, &heapLen)) return NULL;
  int64_t xo = get_i64(env, argv[1]), wo = get_i64(env, argv[2]), oo = get_i64(env, argv[3]), rows = get_i64(env, argv[4]),
          dim = get_i64(env, argv[5]);
  double eps = 0;
  napi_get_value_double(env, argv[6], &eps);
  if (xo < 0 || wo < 0 || oo < 0 || (size_t)(xo + rows * dim) > heapLen || (size_t)(oo + rows * dim) > heapLen || (size_t)(wo + dim) > heapLen) {
    napi_throw_range_error(env, NULL, "llmbox_native.rmsNorm: offsets out of range");
    return NULL;
  }
  const float *w = heap + wo;
  for (int64_t r = 0; r < rows; r++) {
    const float *x = heap + xo + r * dim;
    float *o = heap + oo + r * dim;
    float ss = 0.f;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < dim; i++) ss += x[i] * x[i];
    const float inv = 1.0f / sqrtf(ss / (float)dim + (float)eps);
#pragma omp simd
    for (int64_t i = 0; i < dim; i++) o[i] = x[i] * inv * w[i];
  }
  return NULL;
}

// quantGather(heap, weights(Uint8Array), type, ids(int32 offset), out, n, k): out[i] = W[ids[i]] decoded,
// for an embedding W [vocab x k] kept in its stored type (out-of-range ids give zero rows).
static napi_value QuantGather(napi_env env, napi_callback_info info) {
  float *heap;
  size_t heapLen, wLen;
  uint8_t *w;
  int64_t a[5];
  if (!read_weight_args(env, info, "quantGather", 5, &heap, &heapLen, &w, &wLen, a)) return NULL;
  int type = (int)a[0];
  int64_t io = a[1], oo = a[2], n = a[3], k = a[4];
  size_t rb = row_bytes(type, k);
  if (rb == 0 || wLen % rb || io < 0 || oo < 0 || (size_t)(io + n) > heapLen || (size_t)(oo + n * k) > heapLen) {
    napi_throw_range_error(env, NULL, "llmbox_native.quantGather: arguments out of range");
    return NULL;
  }
  const int32_t *ids = (const int32_t *)(heap + io);
  int64_t rows = (int64_t)(wLen / rb);
  for (int64_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= rows) memset(heap + oo + i * k, 0, sizeof(float) * (size_t)k);
    else decode_row(type, w + (size_t)ids[i] * rb, heap + oo + i * k, k);
  }
  return NULL;
}

typedef struct {
  const uint8_t *src;
  uint8_t *dst;
  int src_type, type;
  int64_t b0, b1;
} quantize_job;

static void *quantize_run(void *arg) {
  quantize_job *t = (quantize_job *)arg;
  quantize_blocks(t->src_type, t->src, t->type, t->dst, t->b0, t->b1);
  return NULL;
}

// quantizeRows(src(Uint8Array), srcType, dst(Uint8Array), type, count): count values stored as
// srcType (0 f32, 1 f16, 30 bf16) written to dst as q8_0, q4_0 or q4_1 blocks (count a multiple of 32).
static napi_value QuantizeRows(napi_env env, napi_callback_info info) {
  size_t argc = 5, srcLen, dstLen;
  napi_value argv[5];
  uint8_t *src, *dst;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) {
    napi_throw_type_error(env, NULL, "llmbox_native.quantizeRows: expected 5 arguments");
    return NULL;
  }
  if (!get_view(env, argv[0], napi_uint8_array, "a Uint8Array of stored values", (void **)&src, &srcLen)) return NULL;
  if (!get_view(env, argv[2], napi_uint8_array, "a Uint8Array for the blocks", (void **)&dst, &dstLen)) return NULL;
  const int src_type = (int)get_i64(env, argv[1]), type = (int)get_i64(env, argv[3]);
  const int64_t count = get_i64(env, argv[4]), blocks = count / 32;
  const size_t width = src_type == T_F32 ? 4 : src_type == T_F16 || src_type == T_BF16 ? 2 : 0;
  if (!width || !quant_block_bytes(type) || count < 0 || count % 32 || srcLen != (size_t)count * width ||
      dstLen != (size_t)blocks * (size_t)quant_block_bytes(type)) {
    napi_throw_range_error(env, NULL, "llmbox_native.quantizeRows: buffers do not match the types and count");
    return NULL;
  }
  const int threads = (double)count < 4.0 * SMALL_WORK ? 1 : configured_threads, tasks = tasks_for(threads);
  quantize_job jobs[MAX_TASKS];
  for (int t = 0; t < tasks; t++)
    jobs[t] = (quantize_job){src, dst, src_type, type, blocks * t / tasks, blocks * (t + 1) / tasks};
  pool_run(quantize_run, jobs, sizeof jobs[0], tasks, threads);
  return NULL;
}

typedef struct {
  const void *values;
  int64_t begin, end, found;
  int type;
} finite_job;

static void *finite_run(void *arg) {
  finite_job *t = (finite_job *)arg;
  t->found = first_non_finite(t->values, t->begin, t->end, t->type);
  return NULL;
}

// firstNonFinite(bytes, type): the index of the first NaN or Inf among the f32/f16/bf16 values, or -1.
static napi_value FirstNonFinite(napi_env env, napi_callback_info info) {
  size_t argc = 2, len;
  napi_value argv[2], out;
  uint8_t *bytes;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || !get_view(env, argv[0], napi_uint8_array, "a Uint8Array of stored values", (void **)&bytes, &len))
    return NULL;
  const int type = (int)get_i64(env, argv[1]);
  const size_t width = type == T_F32 ? 4 : type == T_F16 || type == T_BF16 ? 2 : 0;
  if (!width || len % width || (uintptr_t)bytes % width) {
    napi_throw_range_error(env, NULL, "llmbox_native.firstNonFinite: expected f32, f16 or bf16 values aligned to their width");
    return NULL;
  }
  const int64_t count = (int64_t)(len / width);
  const int threads = (double)count < 4.0 * SMALL_WORK ? 1 : configured_threads, tasks = tasks_for(threads);
  finite_job jobs[MAX_TASKS];
  for (int t = 0; t < tasks; t++) jobs[t] = (finite_job){bytes, count * t / tasks, count * (t + 1) / tasks, -1, type};
  pool_run(finite_run, jobs, sizeof jobs[0], tasks, threads);
  int64_t found = -1;
  for (int t = 0; t < tasks && found < 0; t++) found = jobs[t].found; // tasks are in order: the first found is the first
  CHECK(napi_create_int64(env, found, &out));
  return out;
}

static void free_weights(napi_env env, void *data, void *hint) {
  const size_t bytes = (size_t)(uintptr_t)hint;
  huge_free(data, bytes);
  int64_t now;
  napi_adjust_external_memory(env, -(int64_t)huge_alloc_len(bytes), &now);
}

// allocWeights(bytes): an ArrayBuffer of zeros for weights, outside the V8 heap and in huge pages
// where the system gives them (huge_alloc.c). V8 is told its size, so that dropping a model collects it.
static napi_value AllocWeights(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  const int64_t bytes = argc < 1 ? 0 : get_i64(env, argv[0]);
  if (bytes <= 0) {
    napi_throw_range_error(env, NULL, "llmbox_native.allocWeights: expected a positive number of bytes");
    return NULL;
  }
  void *p = huge_alloc((size_t)bytes);
  if (!p) {
    napi_throw_error(env, NULL, "llmbox_native.allocWeights: out of memory");
    return NULL;
  }
  if (napi_create_external_arraybuffer(env, p, (size_t)bytes, free_weights, (void *)(uintptr_t)bytes, &out) != napi_ok) {
    huge_free(p, (size_t)bytes);
    napi_throw_error(env, NULL, "llmbox_native.allocWeights: N-API refused an external buffer");
    return NULL;
  }
  int64_t now;
  napi_adjust_external_memory(env, (int64_t)huge_alloc_len((size_t)bytes), &now);
  return out;
}

typedef struct {
  void *base;
  size_t span;
} mapping;

static void free_mapping(napi_env env, void *data, void *hint) {
  mapping *m = (mapping *)hint;
  unmap_file(m->base, m->span);
  free(m);
}

// mapFile(path, offset, length): those bytes of the file as an ArrayBuffer mapped copy-on-write
// (map_file.c). V8 is not told the size: clean file pages are the page cache's, which the system
// reclaims without the collector.
static napi_value MapFile(napi_env env, napi_callback_info info) {
  size_t argc = 3, n = 0;
  napi_value argv[3], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char path[4096];
  if (argc < 3 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &n) != napi_ok || n >= sizeof path - 1) {
    napi_throw_type_error(env, NULL, "llmbox_native.mapFile: expected a file path, an offset and a length");
    return NULL;
  }
  const int64_t offset = get_i64(env, argv[1]), length = get_i64(env, argv[2]);
  mapping *m = malloc(sizeof *m);
  void *p = m ? map_file(path, offset, length, &m->base, &m->span) : NULL;
  if (!p) {
    char msg[4200];
    snprintf(msg, sizeof msg, "llmbox_native.mapFile: cannot map %s: %s", path, strerror(m ? errno : ENOMEM));
    free(m);
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  if (napi_create_external_arraybuffer(env, p, (size_t)length, free_mapping, m, &out) != napi_ok) {
    unmap_file(m->base, m->span);
    free(m);
    napi_throw_error(env, NULL, "llmbox_native.mapFile: N-API refused an external buffer");
    return NULL;
  }
  return out;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"batchMatMul", NULL, BatchMatMul, NULL, NULL, NULL, napi_default, NULL},
      {"softmaxXent", NULL, SoftmaxXent, NULL, NULL, NULL, napi_default, NULL},
      {"softmaxXentGrad", NULL, SoftmaxXentGrad, NULL, NULL, NULL, napi_default, NULL},
      {"embeddingGrad", NULL, EmbeddingGrad, NULL, NULL, NULL, napi_default, NULL},
      {"rope", NULL, Rope, NULL, NULL, NULL, napi_default, NULL},
      {"quantMatMul", NULL, QuantMatMul, NULL, NULL, NULL, napi_default, NULL},
      {"quantGather", NULL, QuantGather, NULL, NULL, NULL, napi_default, NULL},
      {"quantizeRows", NULL, QuantizeRows, NULL, NULL, NULL, napi_default, NULL},
      {"allocWeights", NULL, AllocWeights, NULL, NULL, NULL, napi_default, NULL},
      {"mapFile", NULL, MapFile, NULL, NULL, NULL, napi_default, NULL},
      {"firstNonFinite", NULL, FirstNonFinite, NULL, NULL, NULL, napi_default, NULL},
      {"rmsNorm", NULL, RmsNorm, NULL, NULL, NULL, napi_default, NULL},
      {"setThreads", NULL, SetThreads, NULL, NULL, NULL, napi_default, NULL},
      {"getThreads", NULL, GetThreads, NULL, NULL, NULL, napi_default, NULL},
      {"blasInfo", NULL, BlasInfo, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok) return NULL;
  return exports;
}
