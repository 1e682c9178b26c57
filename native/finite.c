// Stored weights checked for NaN and Inf before they are used as they lie: a damaged checkpoint would
// otherwise load and give believable numbers. In JavaScript the scan of a 7B model took seconds.
#include "finite.h"
#include "quant.h"

// Each stretch is first tested with a loop that vectorises (no early exit); only a stretch that
// holds a bad value is searched for it.
#define STRETCH 4096

static int64_t first_in_f32(const uint32_t *w, int64_t begin, int64_t end) {
  for (int64_t at = begin; at < end; at += STRETCH) {
    const int64_t stop = end - at < STRETCH ? end : at + STRETCH;
    int bad = 0;
    for (int64_t i = at; i < stop; i++) bad |= (w[i] & 0x7f800000u) == 0x7f800000u;
    if (bad)
      for (int64_t i = at; i < stop; i++)
        if ((w[i] & 0x7f800000u) == 0x7f800000u) return i;
  }
  return -1;
}

static int64_t first_in_half(const uint16_t *h, int64_t begin, int64_t end, uint16_t exp) {
  for (int64_t at = begin; at < end; at += STRETCH) {
    const int64_t stop = end - at < STRETCH ? end : at + STRETCH;
    int bad = 0;
    for (int64_t i = at; i < stop; i++) bad |= (h[i] & exp) == exp;
    if (bad)
      for (int64_t i = at; i < stop; i++)
        if ((h[i] & exp) == exp) return i;
  }
  return -1;
}

int64_t first_non_finite(const void *values, int64_t begin, int64_t end, int type) {
  if (type == T_F32) return first_in_f32((const uint32_t *)values, begin, end);
  return first_in_half((const uint16_t *)values, begin, end, type == T_BF16 ? 0x7f80 : 0x7c00);
}
