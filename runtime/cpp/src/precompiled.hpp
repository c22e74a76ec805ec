// SentencePiece's precompiled character map, as a tokenizer.json's Precompiled normaliser carries it (base64):
// a little-endian uint32 byte size of the trie, the trie (a darts-clone double array of uint32 units mapping a
// UTF-8 key to an offset), then the replacements, NUL-terminated UTF-8 strings the offsets point into.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace turbo_edge {

class PrecompiledCharsmap {
 public:
  // From the normaliser's base64 "precompiled_charsmap"; a malformed map throws std::runtime_error (one line).
  static PrecompiledCharsmap from_base64(const std::string& b64);

  // The tokenizers package's Precompiled::normalize: the text walked by extended grapheme cluster; a cluster of
  // fewer than 6 bytes is looked up whole first (the shortest key that prefixes it stands for the whole cluster),
  // otherwise, or when nothing matches, each code point is looked up alone and kept as is when nothing matches.
  // ``text`` must be well-formed UTF-8.
  std::string normalize(const std::string& text) const;

 private:
  // The replacement of the shortest key that prefixes key[0, len) (the trie's first common-prefix match; the key
  // ends early at a NUL byte), or false.
  bool lookup(const char* key, size_t len, std::string* out) const;

  std::vector<uint32_t> units_;
  std::string replacements_;
};

}  // namespace turbo_edge
