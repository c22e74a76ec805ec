// UnigramTokenizer (tokenizer.hpp): the T5 / UMT5 tokenizer of spec/unigram.py, without the tokenizers library.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <limits>
#include <stdexcept>

#include "grapheme.hpp"
#include "json.hpp"
#include "tokenizer.hpp"

namespace turbo_edge {
namespace {

constexpr double kUnkPenalty = 10.0;  // tokenizers' Unigram: an uncovered character scores min_score - 10

// Unicode White_Space (Rust's char::is_whitespace, what WhitespaceSplit and Strip test).
bool white_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::vector<std::string> whitespace_split(const std::string& text) {
  std::vector<std::string> words;
  size_t start = 0, len = 0;
  for (size_t i = 0; i < text.size(); i += len) {
    if (!white_space(decode_utf8(text, i, &len))) continue;
    if (i > start) words.push_back(text.substr(start, i - start));
    start = i + len;
  }
  if (text.size() > start) words.push_back(text.substr(start));
  return words;
}

std::string strip(const std::string& text, bool left, bool right) {
  size_t begin = 0, end = 0, len = 0;
  bool seen = false;  // a non-white-space character so far
  for (size_t i = 0; i < text.size(); i += len) {
    const bool space = white_space(decode_utf8(text, i, &len));
    if (!space && !seen) begin = i, seen = true;
    if (!space) end = i + len;
  }
  if (!seen) return left || right ? "" : text;
  return text.substr(left ? begin : 0, (right ? end : text.size()) - (left ? begin : 0));
}

// Every occurrence of ``pattern`` (when ``min_repeat``: every run of min_repeat or more of it) replaced by ``content``.
std::string replace(const std::string& text, const std::string& pattern, size_t min_repeat, const std::string& content) {
  std::string out;
  size_t from = 0;
  for (size_t at = text.find(pattern); at != std::string::npos; at = text.find(pattern, from)) {
    size_t end = at + pattern.size();
    size_t count = 1;
    if (min_repeat)
      for (; text.compare(end, pattern.size(), pattern) == 0; end += pattern.size()) ++count;
    out.append(text, from, at - from);
    if (count >= min_repeat) out += content;
    else out.append(text, at, end - at);
    from = end;
  }
  return out + text.substr(from);
}

[[noreturn]] void refuse(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what + ", which the C++ runtime's Unigram tokenizer does not implement; use the Python runtime "
                           "(spec/unigram.py reads it with the tokenizers package)");
}

// A Replace normaliser's regex that is a repeated character ("c{n,}": Albert's and T5's " {2,}") or a literal.
bool parse_replace_regex(const std::string& regex, std::string* pattern, size_t* min_repeat) {
  const std::string meta = ".^$*+?()[]{}|\\";
  const size_t n = regex.empty() ? 0 : utf8_length(static_cast<unsigned char>(regex[0]));
  const size_t brace = regex.find('{');
  if (n && brace == n && regex.size() > n + 3 && regex.compare(regex.size() - 2, 2, ",}") == 0 && meta.find(regex[0]) == std::string::npos) {
    const std::string digits = regex.substr(n + 1, regex.size() - n - 3);
    if (!digits.empty() && digits.size() < 6 && digits.find_first_not_of("0123456789") == std::string::npos && std::stoul(digits) > 0) {
      *pattern = regex.substr(0, n);
      *min_repeat = std::stoul(digits);
      return true;
    }
  }
  if (regex.empty() || regex.find_first_of(meta) != std::string::npos) return false;
  *pattern = regex;
  *min_repeat = 0;
  return true;
}

bool flag(const Json& obj, const std::string& key, bool fallback) { return obj.has(key) && !obj[key].is_null() ? obj[key].boolean() : fallback; }

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
  UnigramTokenizer t;

  // Normalisers: Precompiled, Strip and Replace, alone or in (nested) Sequences, applied in order.
  std::function<void(const Json&)> add_normalizer = [&](const Json& n) {
    const std::string kind = n["type"].str();
    Normalizer step{};
    if (kind == "Sequence") {
      for (const Json& inner : n["normalizers"].array()) add_normalizer(inner);
      return;
    } else if (kind == "Precompiled") {
      if (n["precompiled_charsmap"].type() != Json::Type::String) refuse(path, "its Precompiled normaliser has no precompiled_charsmap string");
      try {
        step.charsmap = std::make_shared<const PrecompiledCharsmap>(PrecompiledCharsmap::from_base64(n["precompiled_charsmap"].str()));
      } catch (const std::runtime_error& e) {
        throw std::runtime_error(path + ": " + e.what() + "; save the tokenizer again");
      }
      step.kind = Normalizer::Kind::Precompiled;
    } else if (kind == "Strip") {
      step.kind = Normalizer::Kind::Strip;
      step.left = flag(n, "strip_left", false);
      step.right = flag(n, "strip_right", false);
    } else if (kind == "Replace") {
      step.kind = Normalizer::Kind::Replace;
      const Json& pattern = n["pattern"];
      step.content = n["content"].str();
      if (pattern.has("String") && !pattern["String"].str().empty()) {
        step.pattern = pattern["String"].str();
      } else if (!pattern.has("Regex") || !parse_replace_regex(pattern["Regex"].str(), &step.pattern, &step.min_repeat)) {
        refuse(path, "its Replace normaliser's pattern is a regex other than a literal or a repeated character (\"c{n,}\")");
      }
    } else {
      refuse(path, "it has a normaliser (" + kind + ")");
    }
    t.normalizers_.push_back(step);
  };
  if (spec.has("normalizer") && !spec["normalizer"].is_null()) add_normalizer(spec["normalizer"]);

  // Pre-tokeniser: Metaspace, or WhitespaceSplit then Metaspace.
  const Json* meta = nullptr;
  if (spec.has("pre_tokenizer") && !spec["pre_tokenizer"].is_null()) {
    const Json& pre = spec["pre_tokenizer"];
    if (pre["type"].str() == "Metaspace") {
      meta = &pre;
    } else if (pre["type"].str() == "Sequence") {
      const auto& steps = pre["pretokenizers"].array();
      t.whitespace_split_ = steps.size() == 2 && steps[0]["type"].str() == "WhitespaceSplit";
      if (steps.size() == (t.whitespace_split_ ? 2u : 1u) && steps.back()["type"].str() == "Metaspace") meta = &steps.back();
    }
  }
  if (!meta) refuse(path, "its pre-tokeniser is neither Metaspace nor WhitespaceSplit + Metaspace");
  t.meta_ = (*meta)["replacement"].str();
  if (t.meta_.empty() || utf8_length(static_cast<unsigned char>(t.meta_[0])) != t.meta_.size() || !valid_utf8(t.meta_))
    refuse(path, "its Metaspace replacement is not one character");
  const std::string scheme = meta->has("prepend_scheme") ? (*meta)["prepend_scheme"].str() : "always";
  if (scheme != "always" && scheme != "first" && scheme != "never") refuse(path, "its Metaspace prepend_scheme is '" + scheme + "'");
  t.prepend_ = scheme == "always" ? Prepend::Always : scheme == "first" ? Prepend::First : Prepend::Never;
  if (!flag(*meta, "add_prefix_space", true) && t.prepend_ != Prepend::Never)  // tokenizers refuses this pair as well
    refuse(path, "its Metaspace has add_prefix_space false with prepend_scheme '" + scheme + "'");
  if (t.prepend_ == Prepend::First && t.whitespace_split_) refuse(path, "its Metaspace prepends to the first word only, after WhitespaceSplit");
  t.split_ = flag(*meta, "split", true);

  // Added tokens (T5's <pad>, </s>, <unk>, <extra_id_N>): cut out of the raw text wherever they occur.
  if (spec.has("added_tokens") && !spec["added_tokens"].is_null()) {
    for (const Json& tok : spec["added_tokens"].array()) {
      const std::string& content = tok["content"].str();
      if (flag(tok, "normalized", false) || flag(tok, "lstrip", false) || flag(tok, "rstrip", false) || flag(tok, "single_word", false))
        refuse(path, "its added token '" + content + "' is normalized, strips or matches single words only");
      if (!content.empty()) t.added_.emplace_back(content, tok["id"].integer());
    }
  }
  if (model.has("byte_fallback") && model["byte_fallback"].boolean()) refuse(path, "it falls back to bytes");

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

std::string UnigramTokenizer::normalize(const std::string& text) const {
  std::string s = text;
  for (const Normalizer& n : normalizers_) {
    if (n.kind == Normalizer::Kind::Precompiled) s = n.charsmap->normalize(s);
    else if (n.kind == Normalizer::Kind::Strip) s = strip(s, n.left, n.right);
    else s = replace(s, n.pattern, n.min_repeat, n.content);
  }
  return s;
}

// WhitespaceSplit (when configured), then Metaspace: spaces become the replacement, which is prepended unless the
// piece starts with it (scheme "first": only to the piece at the very start of the prompt), and the piece is split
// before each replacement. Empty pieces are dropped.
std::vector<std::string> UnigramTokenizer::pre_tokenize(const std::string& normalized, bool at_start) const {
  std::vector<std::string> words;
  for (const std::string& chunk : whitespace_split_ ? whitespace_split(normalized) : std::vector<std::string>{normalized}) {
    if (chunk.empty()) continue;
    std::string s = replace(chunk, " ", 0, meta_);
    if (s.compare(0, meta_.size(), meta_) != 0 && (prepend_ == Prepend::Always || (prepend_ == Prepend::First && at_start))) s = meta_ + s;
    if (!split_) {
      words.push_back(s);
      continue;
    }
    size_t from = 0;
    for (size_t at = s.find(meta_, meta_.size()); at != std::string::npos; at = s.find(meta_, at + meta_.size())) {
      if (at > from) words.push_back(s.substr(from, at - from));
      from = at;
    }
    words.push_back(s.substr(from));
  }
  return words;
}

Encoding UnigramTokenizer::encode(const std::string& text) const {
  if (!valid_utf8(text)) throw std::runtime_error("the prompt is not valid UTF-8");
  Encoding e;
  std::vector<long long> tokens;
  // The text between added tokens, normalised and pre-tokenised on its own (as tokenizers' AddedVocabulary does).
  size_t start = 0;
  auto encode_piece = [&](size_t end) {
    if (end == start) return;
    for (const std::string& word : pre_tokenize(normalize(text.substr(start, end - start)), start == 0)) {
      std::vector<long long> ids = viterbi(word, &e.unknown_words);
      tokens.insert(tokens.end(), ids.begin(), ids.end());
    }
  };
  for (size_t i = 0; i < text.size();) {
    const std::pair<std::string, long long>* match = nullptr;  // the longest added token at i (leftmost-longest)
    for (const auto& tok : added_)
      if ((!match || tok.first.size() > match->first.size()) && text.compare(i, tok.first.size(), tok.first) == 0) match = &tok;
    if (!match) {
      ++i;
      continue;
    }
    encode_piece(i);
    tokens.push_back(match->second);
    i += match->first.size();
    start = i;
  }
  encode_piece(text.size());
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
