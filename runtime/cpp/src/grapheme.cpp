// Extended grapheme clusters: the boundary rules GB3-GB13 of UAX #29 (Unicode 17.0) over the properties of
// grapheme_table.inc (tools/gen_grapheme_table.py), walking forward from a cluster's first code point.
#include "grapheme.hpp"

#include <algorithm>
#include <iterator>

namespace turbo_edge {
namespace {

struct Run {
  uint32_t first;  // first code point of a run sharing one value
  uint8_t value;   // bits 0-3 Grapheme_Cluster_Break, bit 4 Extended_Pictographic, bits 5-6 Indic_Conjunct_Break
};

const Run kRuns[] = {
#include "grapheme_table.inc"
};

enum Gcb { kOther, kCR, kLF, kControl, kExtend, kZWJ, kRegionalIndicator, kPrepend, kSpacingMark, kL, kV, kT, kLV, kLVT };
enum InCB { kNone, kConsonant, kInCBExtend, kLinker };

struct Props {
  int gcb;
  bool pictographic;
  int incb;
};

Props props(uint32_t cp) {
  const Run* run = std::upper_bound(std::begin(kRuns), std::end(kRuns), cp, [](uint32_t c, const Run& r) { return c < r.first; }) - 1;
  return {run->value & 0xF, ((run->value >> 4) & 1) != 0, (run->value >> 5) & 3};
}

bool is_control(int gcb) { return gcb == kCR || gcb == kLF || gcb == kControl; }

}  // namespace

bool valid_utf8(const std::string& text) {
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    size_t n = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    if (n == 0 || i + n > text.size()) return false;
    for (size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return false;
    const unsigned char c1 = static_cast<unsigned char>(n > 1 ? text[i + 1] : 0);
    if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 >= 0xA0) || (c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 >= 0x90)) return false;
    i += n;
  }
  return true;
}

uint32_t decode_utf8(const std::string& text, size_t pos, size_t* len) {
  const unsigned char c = static_cast<unsigned char>(text[pos]);
  size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(text[pos + k]) & 0x3F);
  *len = n;
  return cp;
}

size_t grapheme_end(const std::string& text, size_t pos) {
  size_t len = 0;
  Props p = props(decode_utf8(text, pos, &len));
  // What the text so far ends with, for the rules that look further back than one code point:
  bool pictographic = p.pictographic;      // GB11: Extended_Pictographic Extend*
  bool pictographic_zwj = false;           // GB11: Extended_Pictographic Extend* ZWJ
  int regional = p.gcb == kRegionalIndicator;  // GB12/13: how many Regional_Indicators in a row
  int conjunct = p.incb == kConsonant ? 1 : 0;  // GB9c: InCB Consonant [Extend Linker]*; 2 once a Linker was seen
  int prev = p.gcb;
  for (size_t i = pos + len; i < text.size(); i += len) {
    const Props c = props(decode_utf8(text, i, &len));
    bool join;
    if (prev == kCR && c.gcb == kLF) join = true;                                                     // GB3
    else if (is_control(prev) || is_control(c.gcb)) join = false;                                    // GB4, GB5
    else if (prev == kL && (c.gcb == kL || c.gcb == kV || c.gcb == kLV || c.gcb == kLVT)) join = true;  // GB6
    else if ((prev == kLV || prev == kV) && (c.gcb == kV || c.gcb == kT)) join = true;                 // GB7
    else if ((prev == kLVT || prev == kT) && c.gcb == kT) join = true;                                 // GB8
    else if (c.gcb == kExtend || c.gcb == kZWJ || c.gcb == kSpacingMark || prev == kPrepend) join = true;  // GB9, GB9a, GB9b
    else if (conjunct == 2 && c.incb == kConsonant) join = true;                                     // GB9c
    else if (pictographic_zwj && c.pictographic) join = true;                                        // GB11
    else if (prev == kRegionalIndicator && c.gcb == kRegionalIndicator) join = regional % 2 == 1;    // GB12, GB13
    else join = false;                                                                               // GB999
    if (!join) return i;
    pictographic_zwj = pictographic && c.gcb == kZWJ;
    pictographic = c.pictographic || (pictographic && c.gcb == kExtend);
    regional = c.gcb == kRegionalIndicator ? regional + 1 : 0;
    conjunct = c.incb == kConsonant ? 1 : conjunct == 0 ? 0 : c.incb == kLinker ? 2 : c.incb == kInCBExtend ? conjunct : 0;
    prev = c.gcb;
  }
  return text.size();
}

}  // namespace turbo_edge
