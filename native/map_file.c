// Weights used where the file lies: mapped instead of read, a model loads in the time its pages take
// to fault in (from the page cache when the file was read before), and the page cache and the model
// hold one copy of the bytes instead of two (a 13.5 GB 7B model and its file do not both fit in 24 GB).
#define _DEFAULT_SOURCE
#include "map_file.h"
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HUGE_PAGE ((size_t)2 << 20)

void *map_file(const char *path, size_t *len) {
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size <= 0) {
    if (st.st_size <= 0) errno = EINVAL;
    close(fd);
    return NULL;
  }
  *len = (size_t)st.st_size;
  const size_t span = ((*len + 4095) & ~(size_t)4095) + HUGE_PAGE;
  // Reserved one huge page larger and the file placed on a 2 MiB boundary in it: where the page cache
  // holds a 2 MiB folio, the kernel can map it with one page-table entry.
  uint8_t *raw = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  uint8_t *p = MAP_FAILED;
  if (raw != MAP_FAILED) {
    uint8_t *at = (uint8_t *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    p = mmap(at, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0);
    const int saved = errno;
    if (p == MAP_FAILED) munmap(raw, span);
    else {
      if (at > raw) munmap(raw, (size_t)(at - raw));
      if (raw + HUGE_PAGE > at) munmap(at + span - HUGE_PAGE, (size_t)(raw + HUGE_PAGE - at));
    }
    errno = saved;
  }
  const int saved = errno;
  close(fd); // the mapping keeps the file
  errno = saved;
  if (p == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
  madvise(p, *len, MADV_HUGEPAGE);
#endif
  return p;
}

void unmap_file(void *p, size_t len) { munmap(p, len); }
