#ifndef LLMBOX_MAP_FILE_H
#define LLMBOX_MAP_FILE_H
#include <stddef.h>
#include <stdint.h>
// Bytes [offset, offset + length) of the file at `path` mapped copy-on-write (writes stay private to
// the process): returns the address of byte `offset`, and in *base and *span what unmap_file takes;
// NULL with errno set on failure (EINVAL for a range outside the file or of no bytes).
void *map_file(const char *path, int64_t offset, int64_t length, void **base, size_t *span);
void unmap_file(void *base, size_t span);
#endif
