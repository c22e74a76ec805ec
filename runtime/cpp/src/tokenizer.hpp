// CLIP byte-level BPE, the algorithm of turbo_edge/spec/tokenizer.py, reading vocab.json + merges.txt when both
// exist, else tokenizer.json (model.vocab, model.merges as "a b" strings or [a, b] pairs: what transformers 5 writes).
//
// Normalisation differs from Python in one documented way: no Unicode NFC and only ASCII lower-casing
// (no ICU dependency). Pre-tokenisation classifies every non-ASCII code point as a letter. For ASCII
// prompts (every prompt of the builtin models) the ids are identical to Python's and transformers'.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "precompiled.hpp"

namespace turbo_edge {

struct Encoding {
  std::vector<long long> ids;          // max_length ids: BOS tokens EOS pad(EOS)...
  bool truncated = false;              // tokens beyond max_length - 2 were dropped
  std::vector<std::string> unknown_words;  // words (byte-level form) that did not encode as one token
  std::vector<long long> mask;             // attention mask (1: the prompt's tokens), for encoders that take one (UMT5); else empty
};

// Bytes of the UTF-8 sequence that starts with ``lead``.
inline size_t utf8_length(unsigned char lead) { return lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : 4; }

class ClipTokenizer {
 public:
  static ClipTokenizer from_dir(const std::string& dir, int max_length);
  Encoding encode(const std::string& text) const;
  int max_length() const { return max_length_; }

  static std::string normalize(const std::string& text);
  static std::vector<std::string> words(const std::string& text);        // words as the user wrote them (UTF-8)
  static std::vector<std::string> pre_tokenize(const std::string& text);  // words in byte-level unicode form
  static std::string byte_level(const std::string& word);                 // a word in the BPE's byte-level alphabet
  std::vector<std::string> bpe(const std::string& word) const;

 private:
  std::unordered_map<std::string, long long> vocab_;
  std::unordered_map<std::string, int> ranks_;  // "a b" -> merge rank
  int max_length_ = 77;
  long long bos_ = 0, eos_ = 0;
};

// The T5 / UMT5 Unigram tokenizer of spec/unigram.py (which runs the tokenizers package), for the tokenizer.json files
// transformers writes for it: Google's UMT5 (its converter: Precompiled + Strip + Replace(" {2,}", "▁") normalisers,
// a Metaspace pre-tokeniser) and what transformers 5 saves (Precompiled, WhitespaceSplit + Metaspace), or none of
// the normalisers. In the tokenizers package's order: the added (special) tokens are cut out of the raw text, each
// piece between them is normalised (SentencePiece's precompiled character map over extended grapheme clusters,
// precompiled.hpp), split on Unicode white space (WhitespaceSplit), given "▁" for spaces and before the piece
// (Metaspace's prepend scheme) and split before each "▁", and each word is Viterbi-searched over the pieces' scores
// (ties: the shorter piece found first; a character no piece covers is <unk> at the lowest score minus 10,
// consecutive ones fused); then TemplateProcessing's special tokens, truncation keeping them, <pad> and the mask.
// Any other normaliser, pre-tokeniser or added-token option is refused in one line when the file is read.
class UnigramTokenizer {
 public:
  static UnigramTokenizer from_file(const std::string& path, int max_length);
  Encoding encode(const std::string& text) const;  // text: UTF-8 (anything else throws std::runtime_error)
  int max_length() const { return max_length_; }
  // The tokenizer.json model type of a directory ("BPE", "Unigram"), or "" without a tokenizer.json.
  static std::string model_type(const std::string& dir);

 private:
  struct Normalizer {
    enum class Kind { Precompiled, Strip, Replace } kind;
    std::shared_ptr<const PrecompiledCharsmap> charsmap;  // Precompiled
    bool left = false, right = false;                     // Strip
    std::string pattern, content;                         // Replace: the literal pattern (one character when repeated)
    size_t min_repeat = 0;                                // Replace: a "c{n,}" regex (runs of n or more c), or 0: literal
  };
  enum class Prepend { Always, First, Never };

  std::string normalize(const std::string& text) const;
  std::vector<std::string> pre_tokenize(const std::string& normalized, bool at_start) const;
  std::vector<long long> viterbi(const std::string& word, std::vector<std::string>* unknown) const;

  std::vector<Normalizer> normalizers_;
  std::vector<std::pair<std::string, long long>> added_;  // added tokens (content, id), matched in the raw text
  bool whitespace_split_ = false;                          // WhitespaceSplit before Metaspace
  std::string meta_ = "\xe2\x96\x81";                      // Metaspace's replacement, U+2581
  Prepend prepend_ = Prepend::Always;
  bool split_ = true;                                      // Metaspace splits before each replacement
  std::unordered_map<std::string, std::pair<long long, double>> pieces_;  // piece -> (id, score)
  size_t longest_ = 1;                                                    // bytes of the longest piece
  double unk_score_ = -10.0;
  long long unk_id_ = 0, pad_id_ = 0;
  std::vector<long long> prefix_, suffix_;  // the post-processor's special tokens around the prompt
  int max_length_ = 512;
};

}  // namespace turbo_edge
