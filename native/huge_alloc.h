#ifndef LLMBOX_HUGE_ALLOC_H
#define LLMBOX_HUGE_ALLOC_H
#include <stddef.h>
#include <stdint.h>
// `bytes` of zeroed memory (NULL when out of memory), freed with huge_free(p, bytes); huge_alloc_len
// is what it takes from the system.
void *huge_alloc(size_t bytes);
void huge_free(void *p, size_t bytes);
size_t huge_alloc_len(size_t bytes);
// `len` bytes (a whole number of pages) of anonymous memory mapped with `prot`, at an address that
// agrees with `phase` modulo 2 MiB (where a file offset `phase` goes, so that the kernel can map its
// 2 MiB folios whole); NULL on failure. Unmapped with munmap(p, len).
void *huge_reserve(size_t len, uintptr_t phase, int prot);
#endif
