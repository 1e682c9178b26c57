// Weights used where the file lies: mapped instead of read, a model loads in the time its pages take
// to fault in (from the page cache when the file was read before), and the page cache and the model
// hold one copy of the bytes instead of two (a 13.5 GB 7B model and its file do not both fit in 24 GB).
#define _DEFAULT_SOURCE
#include "map_file.h"
#include "huge_alloc.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void *map_open(int fd, int64_t offset, int64_t length, void **base, size_t *span) {
  struct stat st;
  if (fstat(fd, &st) != 0) return NULL;
  if (offset < 0 || length <= 0 || offset > st.st_size || length > st.st_size - offset) {
    errno = EINVAL;
    return NULL;
  }
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  const uintptr_t start = (uintptr_t)offset & ~(page - 1), delta = (uintptr_t)offset - start;
  const size_t len = ((size_t)(delta + (uintptr_t)length) + page - 1) & ~(page - 1);
  // The file placed where its address and offset agree modulo 2 MiB: where the page cache holds a
  // 2 MiB folio, the kernel can map it with one page-table entry.
  uint8_t *at = huge_reserve(len, start, PROT_NONE);
  if (!at) return NULL;
  if (mmap(at, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, (off_t)start) == MAP_FAILED) {
    const int saved = errno;
    munmap(at, len);
    errno = saved;
    return NULL;
  }
#ifdef MADV_HUGEPAGE
  madvise(at, len, MADV_HUGEPAGE); // advice: faults read 2 MiB folios where the file system has them
#endif
  madvise(at, len, MADV_WILLNEED); // reading ahead starts now, not one fault at a time
  *base = at;
  *span = len;
  return at + delta;
}

void *map_file(const char *path, int64_t offset, int64_t length, void **base, size_t *span) {
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  void *p = map_open(fd, offset, length, base, span);
  const int saved = errno;
  close(fd); // the mapping keeps the file
  errno = saved;
  return p;
}

void unmap_file(void *base, size_t span) { munmap(base, span); }
