// Memory for weights, outside the V8 heap, whose whole 2 MiB stretches are advised as huge pages.
//
// Decoding streams every weight once a token. With 4 KiB pages a core also walks a page table for
// every 4 KiB it reads (the hardware prefetcher stops at page ends): a q4_0 decode row on one core
// streamed 12.7 GB/s from 4 KiB pages and 15.2 GB/s from 2 MiB ones. Linux's default for
// transparent huge pages is "madvise", so the memory must ask for them.
#define _DEFAULT_SOURCE
#include "huge_alloc.h"
#include <stdint.h>
#include <sys/mman.h>

#define HUGE_PAGE ((size_t)2 << 20)

size_t huge_alloc_len(size_t bytes) { return (bytes + 4095) & ~(size_t)4095; }

void *huge_reserve(size_t len, uintptr_t phase, int prot) {
  // Mapped one huge page larger, then trimmed to where the phase falls. The end is not rounded up to
  // a huge page: the last partial stretch stays in small pages, so no tensor wastes up to 2 MiB.
  uint8_t *raw = mmap(NULL, len + HUGE_PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return NULL;
  uint8_t *p = raw + ((phase - (uintptr_t)raw) & (HUGE_PAGE - 1));
  if (p > raw) munmap(raw, (size_t)(p - raw));
  munmap(p + len, (size_t)(raw + HUGE_PAGE - p)); // p lies less than a huge page past raw
  return p;
}

void *huge_alloc(size_t bytes) {
  const size_t len = huge_alloc_len(bytes);
  uint8_t *p = huge_reserve(len, 0, PROT_READ | PROT_WRITE);
  if (!p) return NULL;
#ifdef MADV_HUGEPAGE
  madvise(p, len, MADV_HUGEPAGE); // advice: where the kernel refuses it, small pages work the same
#endif
  return p;
}

void huge_free(void *p, size_t bytes) { munmap(p, huge_alloc_len(bytes)); }
