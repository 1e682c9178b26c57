#ifndef LLMBOX_FINITE_H
#define LLMBOX_FINITE_H
#include <stdint.h>
// The index of the first value in [begin, end) of `values` stored as `type` (quant.h: T_F32, T_F16
// or T_BF16; aligned to its width) whose exponent bits are all set (NaN or Inf), or -1.
int64_t first_non_finite(const void *values, int64_t begin, int64_t end, int type);
#endif
