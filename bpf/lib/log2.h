/* floor(log2(v)) by halving steps, clamped to `last`: the bucket of a log2 histogram. v = 0
 * goes to the first bucket. Shared by the latency histograms (DNS, API server). */
#ifndef VIGIL_LIB_LOG2_H
#define VIGIL_LIB_LOG2_H

static __always_inline __u32 vigil_log2_bucket(__u64 v, __u32 last) {
  __u32 r = 0;
#pragma unroll
  for (int shift = 32; shift > 0; shift >>= 1) {
    if (v >= (1ULL << shift)) {
      v >>= shift;
      r += shift;
    }
  }
  return r < last ? r : last;
}

#endif /* VIGIL_LIB_LOG2_H */
