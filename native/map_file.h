#ifndef LLMBOX_MAP_FILE_H
#define LLMBOX_MAP_FILE_H
#include <stddef.h>
// The whole file at `path` mapped copy-on-write (writes stay private to the process), starting on a
// 2 MiB boundary; NULL with errno set on failure (an empty file fails with EINVAL). Unmapped with
// unmap_file(p, len).
void *map_file(const char *path, size_t *len);
void unmap_file(void *p, size_t len);
#endif
