// PrecompiledCharsmap (precompiled.hpp): the format as SentencePiece's normalizer writes it and tokenizers'
// spm_precompiled crate reads it, implemented from those descriptions (darts-clone's unit layout: bit 8 "has a
// leaf", bits 0-7 the label, bits 10-31 the offset, shifted left 8 more when bit 9 is set; a leaf's value is its
// low 31 bits).
#include "precompiled.hpp"

#include <stdexcept>

#include "grapheme.hpp"

namespace turbo_edge {
namespace {

constexpr size_t kWholeClusterBytes = 6;  // clusters shorter than this are looked up whole first

std::string base64_decode(const std::string& in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (in.size() % 4 != 0) throw std::runtime_error("its precompiled_charsmap is not base64 (length " + std::to_string(in.size()) + ")");
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = in[i + k];
      const bool tail = i + 4 == in.size() && k >= 2 && c == '=';
      v[k] = tail ? 0 : value(c);
      pad += tail;
      if (v[k] < 0 || (pad && !tail)) throw std::runtime_error("its precompiled_charsmap is not base64 (byte " + std::to_string(i + k) + ")");
    }
    const uint32_t n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out += static_cast<char>(n >> 16);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xFF);
    if (pad < 1) out += static_cast<char>(n & 0xFF);
  }
  return out;
}

uint32_t le32(const std::string& b, size_t at) {
  return static_cast<uint32_t>(static_cast<unsigned char>(b[at])) | static_cast<uint32_t>(static_cast<unsigned char>(b[at + 1])) << 8 |
         static_cast<uint32_t>(static_cast<unsigned char>(b[at + 2])) << 16 | static_cast<uint32_t>(static_cast<unsigned char>(b[at + 3])) << 24;
}

bool has_leaf(uint32_t unit) { return (unit >> 8) & 1; }
uint32_t label(uint32_t unit) { return unit & ((1u << 31) | 0xFF); }
uint32_t offset(uint32_t unit) { return (unit >> 10) << ((unit & (1u << 9)) >> 6); }
uint32_t leaf_value(uint32_t unit) { return unit & ((1u << 31) - 1); }

}  // namespace

PrecompiledCharsmap PrecompiledCharsmap::from_base64(const std::string& b64) {
  const std::string blob = base64_decode(b64);
  if (blob.size() < 4) throw std::runtime_error("its precompiled_charsmap is too short for the trie size");
  const size_t trie_bytes = le32(blob, 0);
  if (trie_bytes < 4 || 4 + trie_bytes / 4 * 4 > blob.size())
    throw std::runtime_error("its precompiled_charsmap's trie (" + std::to_string(trie_bytes) + " bytes) does not fit its " +
                             std::to_string(blob.size()) + " bytes");
  PrecompiledCharsmap m;
  m.units_.resize(trie_bytes / 4);
  for (size_t i = 0; i < m.units_.size(); ++i) m.units_[i] = le32(blob, 4 + 4 * i);
  m.replacements_ = blob.substr(4 + m.units_.size() * 4);
  if (!valid_utf8(m.replacements_)) throw std::runtime_error("its precompiled_charsmap's replacement strings are not UTF-8");
  return m;
}

bool PrecompiledCharsmap::lookup(const char* key, size_t len, std::string* out) const {
  size_t node = offset(units_[0]);
  for (size_t i = 0; i < len && key[i] != '\0'; ++i) {
    const uint32_t c = static_cast<unsigned char>(key[i]);
    node ^= c;
    if (node >= units_.size() || label(units_[node]) != c) return false;
    const bool leaf = has_leaf(units_[node]);
    node ^= offset(units_[node]);
    if (leaf) {  // the first (shortest) match is the one used
      if (node >= units_.size()) return false;
      const size_t at = leaf_value(units_[node]);
      if (at > replacements_.size()) throw std::runtime_error("a precompiled_charsmap entry points past its replacement strings");
      const size_t end = replacements_.find('\0', at);
      *out = replacements_.substr(at, end == std::string::npos ? std::string::npos : end - at);
      return true;
    }
  }
  return false;
}

std::string PrecompiledCharsmap::normalize(const std::string& text) const {
  std::string out, repl;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t end = grapheme_end(text, pos);
    if (end - pos < kWholeClusterBytes && lookup(text.data() + pos, end - pos, &repl)) {
      out += repl;
    } else {
      for (size_t i = pos, n = 0; i < end; i += n) {
        decode_utf8(text, i, &n);
        if (lookup(text.data() + i, n, &repl)) out += repl;
        else out.append(text, i, n);
      }
    }
    pos = end;
  }
  return out;
}

}  // namespace turbo_edge
