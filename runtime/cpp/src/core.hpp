// sha256 (FIPS 180-4) for bundle verification and the counter-based noise of turbo_edge/runtime/noise.py.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace turbo_edge {

std::string sha256_file(const std::string& path);  // lowercase hex digest; throws if unreadable
std::string sha256_bytes(const std::string& data);

// Standard normal float32 noise, element i a pure function of (seed, stream, i): see noise.py's docstring.
void normal(uint64_t seed, uint64_t stream, float* out, size_t n);
std::vector<float> normal(uint64_t seed, uint64_t stream, size_t n);

// noise.stream_id: draw 0 is the initial latent of prompt i; draw k >= 1 the noise a consistency sampler injects after step k - 1.
inline uint64_t stream_id(uint64_t prompt_index, uint64_t draw) { return prompt_index + (draw << 32); }

}  // namespace turbo_edge
