// UTF-8 decoding and extended grapheme clusters (UAX #29, Unicode 17.0: what the tokenizers package's
// unicode-segmentation crate implements), for the Precompiled normaliser of the Unigram tokenizer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace turbo_edge {

// Whether ``text`` is well-formed UTF-8 (no overlong forms, surrogates or code points above U+10FFFF).
bool valid_utf8(const std::string& text);

// The code point at byte ``pos`` of well-formed UTF-8 ``text``; ``*len`` gets its byte length.
uint32_t decode_utf8(const std::string& text, size_t pos, size_t* len);

// The byte offset where the extended grapheme cluster starting at ``pos`` of well-formed UTF-8 ``text`` ends.
size_t grapheme_end(const std::string& text, size_t pos);

}  // namespace turbo_edge
