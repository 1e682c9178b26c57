// Decoding calls a product about 150 times a token, each a fraction of a millisecond; creating and
// joining a thread per call cost 47-55 us of it. The workers here stay: after a task each spins for
// a while on the job counter (the next product is usually tens of microseconds away), then sleeps on
// a condition variable, so an idle pool takes no CPU from BLAS or the wasm thread.
#include "pool.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define MAX_WORKERS 63
// Rounds of the spin-wait before a worker sleeps: about 1 ms (a pause is 30 ns on this EPYC).
#define SPIN_ROUNDS 32000

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RELAX() _mm_pause()
#else
#define RELAX() ((void)0)
#endif

static struct {
  pthread_mutex_t mu;
  pthread_cond_t wake;
  int workers;            // started so far
  atomic_uint job;        // counts dispatches; a change means new tasks
  atomic_int unfinished;  // workers yet to finish the current job
  void *(*fn)(void *);
  char *tasks;
  size_t stride;
  int count;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

// One caller at a time: a second thread calling in (Node worker threads) runs its tasks itself.
static pthread_mutex_t dispatch = PTHREAD_MUTEX_INITIALIZER;

static void *worker(void *arg) {
  // The worker's number (1-based: task 0 is the caller's) and the job count when it was made: a
  // worker that first runs after the job it was made for was dispatched must still take part.
  const int id = (int)((uintptr_t)arg & 0xff);
  unsigned seen = (unsigned)((uintptr_t)arg >> 8);
  for (;;) {
    for (int i = 0; i < SPIN_ROUNDS && atomic_load(&pool.job) == seen; i++) RELAX();
    if (atomic_load(&pool.job) == seen) {
      pthread_mutex_lock(&pool.mu);
      while (atomic_load(&pool.job) == seen) pthread_cond_wait(&pool.wake, &pool.mu);
      pthread_mutex_unlock(&pool.mu);
    }
    seen = atomic_load(&pool.job);
    if (id < pool.count) pool.fn(pool.tasks + (size_t)id * pool.stride);
    atomic_fetch_sub(&pool.unfinished, 1);
  }
  return NULL;
}

// Starts workers until there are `want`; returns how many there are.
static int grow(int want) {
  if (want > MAX_WORKERS) want = MAX_WORKERS;
  while (pool.workers < want) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    const uintptr_t arg = (uintptr_t)atomic_load(&pool.job) << 8 | (uintptr_t)(pool.workers + 1);
    const int ok = pthread_create(&t, &attr, worker, (void *)arg) == 0;
    pthread_attr_destroy(&attr);
    if (!ok) break;
    pool.workers++;
  }
  return pool.workers;
}

static void run_inline(void *(*fn)(void *), char *tasks, size_t stride, int count) {
  for (int i = 0; i < count; i++) fn(tasks + (size_t)i * stride);
}

void pool_run(void *(*fn)(void *), void *tasks, size_t stride, int count) {
  if (count <= 1 || pthread_mutex_trylock(&dispatch) != 0) {
    run_inline(fn, (char *)tasks, stride, count);
    return;
  }
  const int workers = grow(count - 1);
  // Every started worker takes part in each job (those past `count` only check in).
  pool.fn = fn;
  pool.tasks = (char *)tasks;
  pool.stride = stride;
  pool.count = count;
  atomic_store(&pool.unfinished, workers);
  pthread_mutex_lock(&pool.mu);
  atomic_fetch_add(&pool.job, 1);
  pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.mu);
  fn(tasks);
  // Tasks the pool could not start threads for run here.
  run_inline(fn, (char *)tasks + (size_t)(workers + 1) * stride, stride, count - 1 - workers);
  while (atomic_load(&pool.unfinished) > 0) RELAX();
  pthread_mutex_unlock(&dispatch);
}
