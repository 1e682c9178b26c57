#ifndef LLMBOX_HUGE_ALLOC_H
#define LLMBOX_HUGE_ALLOC_H
#include <stddef.h>
// `bytes` of zeroed memory (NULL when out of memory), freed with huge_free(p, bytes); huge_alloc_len
// is what it takes from the system.
void *huge_alloc(size_t bytes);
void huge_free(void *p, size_t bytes);
size_t huge_alloc_len(size_t bytes);
#endif
