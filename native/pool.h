// A pool of worker threads for the add-on's own kernels (BLAS keeps its own).
#ifndef LLMBOX_POOL_H
#define LLMBOX_POOL_H
#include <stddef.h>
// Runs fn(tasks + i * stride) for i in [0, count) on up to `threads` threads, the caller one of
// them (workers start on first use), and returns when all are done. Each thread takes the next task
// not yet taken, so a worker the system has not scheduled leaves its share to the others.
void pool_run(void *(*fn)(void *), void *tasks, size_t stride, int count, int threads);
#endif
