// The same lines as turbo_edge/runtime/noise.py (SplitMix64 finaliser over a counter, Box-Muller in double).
#include <cmath>

#include "core.hpp"

namespace turbo_edge {
namespace {

constexpr uint64_t G = 0x9E3779B97F4A7C15ULL;

inline uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

}  // namespace

void normal(uint64_t seed, uint64_t stream, float* out, size_t n) {
  const uint64_t key = mix(seed + (stream + 1) * G);
  const double two_pi = 2.0 * M_PI;  // Python's 2.0 * np.pi, the same double
  for (size_t i = 0; i < n; ++i) {
    uint64_t h1 = mix(key + (2 * uint64_t(i) + 1) * G);
    uint64_t h2 = mix(key + (2 * uint64_t(i) + 2) * G);
    double u1 = (double(h1 >> 11) + 1.0) * 0x1p-53;  // in (0, 1]
    double u2 = double(h2 >> 11) * 0x1p-53;          // in [0, 1)
    out[i] = static_cast<float>(std::sqrt(-2.0 * std::log(u1)) * std::cos(two_pi * u2));
  }
}

std::vector<float> normal(uint64_t seed, uint64_t stream, size_t n) {
  std::vector<float> v(n);
  normal(seed, stream, v.data(), n);
  return v;
}

}  // namespace turbo_edge
