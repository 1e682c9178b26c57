// A pool of worker threads for the add-on's own kernels (BLAS keeps its own).
#ifndef LLMBOX_POOL_H
#define LLMBOX_POOL_H
#include <stddef.h>
// Runs fn(tasks + i * stride) for i in [0, count): task 0 on the calling thread, the others on the
// pool's workers (started on first use), and returns when all are done.
void pool_run(void *(*fn)(void *), void *tasks, size_t stride, int count);
#endif
