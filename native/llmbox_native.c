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
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <math.h>

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

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"batchMatMul", NULL, BatchMatMul, NULL, NULL, NULL, napi_default, NULL},
      {"softmaxXent", NULL, SoftmaxXent, NULL, NULL, NULL, napi_default, NULL},
      {"softmaxXentGrad", NULL, SoftmaxXentGrad, NULL, NULL, NULL, napi_default, NULL},
      {"embeddingGrad", NULL, EmbeddingGrad, NULL, NULL, NULL, napi_default, NULL},
      {"rope", NULL, Rope, NULL, NULL, NULL, napi_default, NULL},
      {"setThreads", NULL, SetThreads, NULL, NULL, NULL, napi_default, NULL},
      {"getThreads", NULL, GetThreads, NULL, NULL, NULL, napi_default, NULL},
      {"blasInfo", NULL, BlasInfo, NULL, NULL, NULL, napi_default, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok) return NULL;
  return exports;
}
