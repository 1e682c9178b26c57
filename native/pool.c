// Decoding calls a product about 150 times a token, each a fraction of a millisecond; creating and
// joining a thread per call cost 47-55 us of it. The workers here stay: after a task each spins for
// a while on the job counter (the next product is usually tens of microseconds away), then sleeps on
// a condition variable, so an idle pool takes no CPU from BLAS or the wasm thread.
//
// Tasks are taken, not assigned: with one task per thread, a worker that the system had descheduled
// (V8's own threads share the cores) held up the call until it ran again, which left one decode
// product in ten at 1-2 ms instead of 0.1. Now the caller and the workers take task numbers from one
// counter, and a late worker finds none left.
#include "pool.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define MAX_WORKERS 63
// Rounds of the spin-wait before a worker sleeps: about 1 ms (a pause is 30 ns on this EPYC).
#define SPIN_ROUNDS 32000
// A task number no job reaches: the counter holds it while the job's fields are written.
#define NO_TASK 0xffffffffu

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RELAX() _mm_pause()
#else
#define RELAX() ((void)0)
#endif

// One job's fields. Two slots alternate, so a worker still looking at the previous job never reads
// a slot being filled for the next one; the counter's high half names the job, and a worker whose
// job it no longer names takes nothing.
typedef struct {
  _Atomic uint64_t next; // job << 32 | the next task number
  atomic_int done;       // tasks finished
  void *(*fn)(void *);
  char *tasks;
  size_t stride;
  atomic_int count, threads; // read by late workers while the next job may be writing them
} job_slot;

static struct {
  pthread_mutex_t mu;
  pthread_cond_t wake;
  int workers;     // started so far
  atomic_uint job; // the latest job's number
  job_slot slot[2];
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

// One caller at a time: a second thread calling in (Node worker threads) runs its tasks itself.
static pthread_mutex_t dispatch = PTHREAD_MUTEX_INITIALIZER;

// Takes and runs job `job`'s tasks until none are left; `id` is the thread's place (0: the caller).
static void take_tasks(unsigned job, int id) {
  job_slot *s = &pool.slot[job & 1];
  for (;;) {
    uint64_t v = atomic_load(&s->next);
    if ((unsigned)(v >> 32) != job) return;
    const unsigned i = (unsigned)v;
    // Read before the exchange below, these may already be the next job's; the exchange then fails.
    if (i >= (unsigned)atomic_load(&s->count) || id >= atomic_load(&s->threads)) return;
    if (!atomic_compare_exchange_weak(&s->next, &v, v + 1)) continue;
    s->fn(s->tasks + (size_t)i * s->stride);
    atomic_fetch_add(&s->done, 1);
  }
}

static void *worker(void *arg) {
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
    take_tasks(seen, id);
  }
  return NULL;
}

// Starts workers until there are `want` (fewer if the system refuses threads: tasks are taken, so
// the ones there are do them).
static void grow(int want) {
  if (want > MAX_WORKERS) want = MAX_WORKERS;
  while (pool.workers < want) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    // Its place, and the job number it starts from (it takes part in jobs after that one).
    const uintptr_t arg = (uintptr_t)atomic_load(&pool.job) << 8 | (uintptr_t)(pool.workers + 1);
    const int ok = pthread_create(&t, &attr, worker, (void *)arg) == 0;
    pthread_attr_destroy(&attr);
    if (!ok) break;
    pool.workers++;
  }
}

void pool_run(void *(*fn)(void *), void *tasks, size_t stride, int count, int threads) {
  if (count <= 1 || threads <= 1 || pthread_mutex_trylock(&dispatch) != 0) {
    for (int i = 0; i < count; i++) fn((char *)tasks + (size_t)i * stride);
    return;
  }
  grow(threads - 1);
  const unsigned job = atomic_load(&pool.job) + 1;
  job_slot *s = &pool.slot[job & 1];
  // Closed while its fields change: a worker still on the job two back finds another job's number.
  atomic_store(&s->next, (uint64_t)job << 32 | NO_TASK);
  s->fn = fn;
  s->tasks = (char *)tasks;
  s->stride = stride;
  atomic_store(&s->count, count);
  atomic_store(&s->threads, threads);
  atomic_store(&s->done, 0);
  atomic_store(&s->next, (uint64_t)job << 32);
  pthread_mutex_lock(&pool.mu);
  atomic_store(&pool.job, job);
  pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.mu);
  take_tasks(job, 0);
  while (atomic_load(&s->done) < count) RELAX();
  pthread_mutex_unlock(&dispatch);
}
