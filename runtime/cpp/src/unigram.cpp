// UnigramTokenizer (tokenizer.hpp): the T5 / UMT5 tokenizer of spec/unigram.py, without the tokenizers library.
#include <algorithm>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "json.hpp"
#include "tokenizer.hpp"

namespace turbo_edge {
namespace {

const std::string kMeta = "\xe2\x96\x81";  // U+2581, Metaspace's replacement
constexpr double kUnkPenalty = 10.0;      // tokenizers' Unigram: an uncovered character scores min_score - 10

bool is_space(const std::string& text, size_t i, size_t* len) {
  unsigned char c = static_cast<unsigned char>(text[i]);
  if (c == ' ' || (c >= 0x09 && c <= 0x0D)) { *len = 1; return true; }
  // The Unicode white space WhitespaceSplit also splits on, in UTF-8 (NBSP, U+1680, U+2000-200A, U+2028/9, U+202F, U+205F, U+3000).
  static const char* const wide[] = {"\xc2\x85", "\xc2\xa0", "\xe1\x9a\x80", "\xe2\x80\x80", "\xe2\x80\x81", "\xe2\x80\x82", "\xe2\x80\x83",
                                     "\xe2\x80\x84", "\xe2\x80\x85", "\xe2\x80\x86", "\xe2\x80\x87", "\xe2\x80\x88", "\xe2\x80\x89",
                                     "\xe2\x80\x8a", "\xe2\x80\xa8", "\xe2\x80\xa9", "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80"};
  for (const char* w : wide) {
    std::string s(w);
    if (text.compare(i, s.size(), s) == 0) { *len = s.size(); return true; }
  }
  return false;
}

std::vector<std::string> whitespace_split(const std::string& text) {
  std::vector<std::string> words;
  std::string cur;
  for (size_t i = 0; i < text.size();) {
    size_t len = 0;
    if (is_space(text, i, &len)) {
      if (!cur.empty()) words.push_back(cur);
      cur.clear();
      i += len;
    } else {
      size_t n = std::min(utf8_length(static_cast<unsigned char>(text[i])), text.size() - i);
      cur += text.substr(i, n);
      i += n;
    }
  }
  if (!cur.empty()) words.push_back(cur);
  return words;
}

void refuse(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what + ", which the C++ runtime's Unigram tokenizer does not implement; use the Python runtime "
                           "(spec/unigram.py reads it with the tokenizers package)");
}

}  // namespace

std::string UnigramTokenizer::model_type(const std::string& dir) {
  std::FILE* f = std::fopen((dir + "/tokenizer.json").c_str(), "rb");
  if (!f) return "";
  std::fclose(f);
  Json spec = Json::parse_file(dir + "/tokenizer.json");
  if (spec.type() != Json::Type::Object || !spec.has("model") || spec["model"].type() != Json::Type::Object || !spec["model"].has("type")) return "";
  return spec["model"]["type"].str();
}

UnigramTokenizer UnigramTokenizer::from_file(const std::string& path, int max_length) {
  Json spec = Json::parse_file(path);
  const Json& model = spec["model"];
  if (model["type"].str() != "Unigram") throw std::runtime_error(path + " holds a '" + model["type"].str() + "' model, not a Unigram one");
  if (spec.has("normalizer") && !spec["normalizer"].is_null()) refuse(path, "it has a normaliser (" + spec["normalizer"]["type"].str() + ")");
  const Json& pre = spec.has("pre_tokenizer") ? spec["pre_tokenizer"] : spec;
  bool ok = spec.has("pre_tokenizer") && pre.has("type") && pre["type"].str() == "Sequence" && pre["pretokenizers"].size() == 2 &&
            pre["pretokenizers"][0]["type"].str() == "WhitespaceSplit" && pre["pretokenizers"][1]["type"].str() == "Metaspace" &&
            pre["pretokenizers"][1]["replacement"].str() == kMeta &&
            (!pre["pretokenizers"][1].has("prepend_scheme") || pre["pretokenizers"][1]["prepend_scheme"].str() == "always");
  if (!ok) refuse(path, "its pre-tokeniser is not WhitespaceSplit + Metaspace(\xe2\x96\x81, always)");
  if (model.has("byte_fallback") && model["byte_fallback"].boolean()) refuse(path, "it falls back to bytes");
  UnigramTokenizer t;
  double min_score = std::numeric_limits<double>::infinity();
  const auto& vocab = model["vocab"].array();
  for (size_t i = 0; i < vocab.size(); ++i) {
    const std::string& piece = vocab[i][0].str();
    double score = vocab[i][1].number();
    t.pieces_.emplace(piece, std::make_pair(static_cast<long long>(i), score));
    t.longest_ = std::max(t.longest_, piece.size());
    min_score = std::min(min_score, score);
  }
  t.unk_score_ = min_score - kUnkPenalty;
  t.unk_id_ = model.has("unk_id") && !model["unk_id"].is_null() ? model["unk_id"].integer() : 0;
  if (!t.pieces_.count("<pad>")) throw std::runtime_error(path + " has no <pad> token: it is not a T5 / UMT5 tokenizer");
  t.pad_id_ = t.pieces_["<pad>"].first;
  if (spec.has("post_processor") && !spec["post_processor"].is_null()) {
    const Json& post = spec["post_processor"];
    if (post["type"].str() != "TemplateProcessing") refuse(path, "its post-processor is " + post["type"].str());
    bool seen_a = false;
    for (const Json& item : post["single"].array()) {
      if (item.has("Sequence")) { seen_a = true; continue; }
      for (const Json& id : post["special_tokens"][item["SpecialToken"]["id"].str()]["ids"].array())
        (seen_a ? t.suffix_ : t.prefix_).push_back(id.integer());
    }
  }
  if (max_length < static_cast<int>(t.prefix_.size() + t.suffix_.size()) + 1) throw std::runtime_error("max_length is too short for the special tokens");
  t.max_length_ = max_length;
  return t;
}

// Best segmentation of one pre-token (tokenizers' Unigram::encode_optimized): the best path ending at each character
// boundary, a candidate replacing it only when strictly better (shorter pieces are tried first); a character that no
// one-character piece covers may also be taken alone as <unk>; consecutive <unk> fuse into one.
std::vector<long long> UnigramTokenizer::viterbi(const std::string& word, std::vector<std::string>* unknown) const {
  const size_t n = word.size();
  struct Best { double score = 0; long long id = -1; size_t start = 0; };
  std::vector<Best> best(n + 1);
  best[0].id = -2;  // the start: reachable, score 0
  for (size_t pos = 0; pos < n; pos = pos + std::min(utf8_length(static_cast<unsigned char>(word[pos])), n - pos)) {
    if (best[pos].id == -1) continue;
    const double here = best[pos].score;
    const size_t char_len = std::min(utf8_length(static_cast<unsigned char>(word[pos])), n - pos);
    bool single = false;
    for (size_t end = pos + char_len; end <= n && end - pos <= longest_;) {
      auto it = pieces_.find(word.substr(pos, end - pos));
      if (it != pieces_.end()) {
        single = single || end - pos == char_len;
        double cand = here + it->second.second;
        if (best[end].id == -1 || cand > best[end].score) best[end] = {cand, it->second.first, pos};
      }
      if (end == n) break;
      end += std::min(utf8_length(static_cast<unsigned char>(word[end])), n - end);
    }
    if (!single) {
      double cand = here + unk_score_;
      size_t end = pos + char_len;
      if (best[end].id == -1 || cand > best[end].score) best[end] = {cand, unk_id_, pos};
    }
  }
  std::vector<std::pair<long long, std::string>> rev;
  for (size_t end = n; end > 0; end = best[end].start) rev.emplace_back(best[end].id, word.substr(best[end].start, end - best[end].start));
  std::vector<long long> ids;
  bool last_unk = false;
  for (auto it = rev.rbegin(); it != rev.rend(); ++it) {
    bool unk = it->first == unk_id_;
    if (unk && last_unk) { unknown->back() += it->second; continue; }
    if (unk) unknown->push_back(it->second);
    ids.push_back(it->first);
    last_unk = unk;
  }
  return ids;
}

Encoding UnigramTokenizer::encode(const std::string& text) const {
  Encoding e;
  std::vector<long long> tokens;
  for (const std::string& w : whitespace_split(text)) {
    std::string word = w.compare(0, kMeta.size(), kMeta) == 0 ? w : kMeta + w;  // Metaspace: prepend "always"
    std::vector<long long> ids = viterbi(word, &e.unknown_words);
    tokens.insert(tokens.end(), ids.begin(), ids.end());
  }
  const size_t room = static_cast<size_t>(max_length_) - prefix_.size() - suffix_.size();
  e.truncated = tokens.size() > room;
  if (e.truncated) tokens.resize(room);
  e.ids = prefix_;
  e.ids.insert(e.ids.end(), tokens.begin(), tokens.end());
  e.ids.insert(e.ids.end(), suffix_.begin(), suffix_.end());
  e.mask.assign(e.ids.size(), 1);
  e.mask.resize(static_cast<size_t>(max_length_), 0);
  e.ids.resize(static_cast<size_t>(max_length_), pad_id_);
  return e;
}

}  // namespace turbo_edge
