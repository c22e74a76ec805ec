// CLIP byte-level BPE, the algorithm of turbo_edge/spec/tokenizer.py, reading vocab.json + merges.txt when both
// exist, else tokenizer.json (model.vocab, model.merges as "a b" strings or [a, b] pairs: what transformers 5 writes).
//
// Normalisation differs from Python in one documented way: no Unicode NFC and only ASCII lower-casing
// (no ICU dependency). Pre-tokenisation classifies every non-ASCII code point as a letter. For ASCII
// prompts (every prompt of the builtin models) the ids are identical to Python's and transformers'.
#pragma once

#include <cstddef>
#include <string>
#include <unordered_map>
#include <vector>

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

// The T5 / UMT5 Unigram tokenizer of spec/unigram.py (which runs the tokenizers package), for the tokenizer.json
// transformers 5 writes for it: no normaliser, WhitespaceSplit + Metaspace ("▁" before each word), Viterbi over the
// pieces' scores (ties: the shorter piece found first; a character no piece covers is <unk> at the lowest score
// minus 10, consecutive ones fused), TemplateProcessing's special tokens, truncation keeping them, <pad> and the mask.
// A tokenizer.json with a normaliser (real UMT5 files carry SentencePiece's precompiled character map) or another
// pre-tokeniser is refused in one line: its rules are not re-implemented here.
class UnigramTokenizer {
 public:
  static UnigramTokenizer from_file(const std::string& path, int max_length);
  Encoding encode(const std::string& text) const;
  int max_length() const { return max_length_; }
  // The tokenizer.json model type of a directory ("BPE", "Unigram"), or "" without a tokenizer.json.
  static std::string model_type(const std::string& dir);

 private:
  std::vector<long long> viterbi(const std::string& word, std::vector<std::string>* unknown) const;
  std::unordered_map<std::string, std::pair<long long, double>> pieces_;  // piece -> (id, score)
  size_t longest_ = 1;                                                    // bytes of the longest piece
  double unk_score_ = -10.0;
  long long unk_id_ = 0, pad_id_ = 0;
  std::vector<long long> prefix_, suffix_;  // the post-processor's special tokens around the prompt
  int max_length_ = 512;
};

}  // namespace turbo_edge
