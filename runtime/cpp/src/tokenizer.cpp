#include "tokenizer.hpp"

#include <climits>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "json.hpp"

namespace turbo_edge {
namespace {

const char* const BOS = "<|startoftext|>";
const char* const EOS = "<|endoftext|>";
const char* const EOW = "</w>";

std::string utf8(unsigned cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

// GPT-2 / CLIP reversible byte -> printable code point map (tokenizer.py bytes_to_unicode).
const std::vector<std::string>& byte_map() {
  static const std::vector<std::string> table = [] {
    std::vector<int> cps(256, -1);
    auto printable = [](int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); };
    int extra = 0;
    for (int b = 0; b < 256; ++b) cps[b] = printable(b) ? b : 256 + extra++;
    std::vector<std::string> t(256);
    for (int b = 0; b < 256; ++b) t[b] = utf8(static_cast<unsigned>(cps[b]));
    return t;
  }();
  return table;
}

bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
// [^\W\d_]: ASCII letters, and (documented approximation) any non-ASCII byte of a UTF-8 sequence.
bool is_letter(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80; }

// Split into UTF-8 symbols (one code point each).
std::vector<std::string> utf8_symbols(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = utf8_length(c);
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

}  // namespace

std::string ClipTokenizer::normalize(const std::string& text) {
  std::string out;
  bool pending_space = false;
  for (unsigned char c : text) {
    if (is_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += ' ';
    pending_space = false;
    out += static_cast<char>((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
  }
  return out;
}

std::string ClipTokenizer::byte_level(const std::string& word) {
  std::string out;
  for (unsigned char c : word) out += byte_map()[c];
  return out;
}

std::vector<std::string> ClipTokenizer::pre_tokenize(const std::string& text) {
  std::vector<std::string> pieces;
  for (const std::string& w : words(text)) pieces.push_back(byte_level(w));
  return pieces;
}

std::vector<std::string> ClipTokenizer::words(const std::string& text) {
  // Same alternatives, in the same order, as tokenizer.py's _PATTERN (a leftmost-first regex).
  static const char* const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
  const std::string s = normalize(text);
  std::vector<std::string> pieces;
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t start = i;
    if (s.compare(i, 15, BOS) == 0) {
      i += 15;
    } else if (s.compare(i, 13, EOS) == 0) {
      i += 13;
    } else if (is_space(c)) {
      ++i;
      continue;
    } else {
      bool matched = false;
      if (c == '\'') {
        for (const char* k : contractions) {
          size_t n = std::char_traits<char>::length(k);
          if (s.compare(i, n, k) == 0) { i += n; matched = true; break; }
        }
      }
      if (!matched) {
        if (is_letter(c)) {
          while (i < s.size() && is_letter(static_cast<unsigned char>(s[i]))) ++i;
        } else if (is_digit(c)) {
          ++i;
        } else {  // (?:[^\s\w]|_)+
          while (i < s.size()) {
            unsigned char d = static_cast<unsigned char>(s[i]);
            if (is_space(d) || is_digit(d) || is_letter(d)) break;
            ++i;
          }
        }
      }
    }
    pieces.push_back(s.substr(start, i - start));
  }
  return pieces;
}

std::vector<std::string> ClipTokenizer::bpe(const std::string& word) const {
  std::vector<std::string> symbols = utf8_symbols(word);
  if (symbols.empty()) return symbols;
  symbols.back() += EOW;
  while (symbols.size() > 1) {
    int best = INT_MAX;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      auto it = ranks_.find(symbols[i] + " " + symbols[i + 1]);
      if (it != ranks_.end() && it->second < best) best = it->second;
    }
    if (best == INT_MAX) break;
    std::vector<std::string> merged;
    for (size_t i = 0; i < symbols.size();) {
      if (i + 1 < symbols.size()) {
        auto it = ranks_.find(symbols[i] + " " + symbols[i + 1]);
        if (it != ranks_.end() && it->second == best) {
          merged.push_back(symbols[i] + symbols[i + 1]);
          i += 2;
          continue;
        }
      }
      merged.push_back(symbols[i]);
      ++i;
    }
    symbols.swap(merged);
  }
  return symbols;
}

namespace {

bool is_file(const std::string& path) { return static_cast<bool>(std::ifstream(path)); }

const char* const BAD_MERGE = ": a merge is neither an \"a b\" string nor an [a, b] pair; save the tokenizer again";

// A merges.txt line or a string merge of tokenizer.json: "a b" -> the ranks_ key "a b".
std::string merge_key(const std::string& path, const std::string& merge) {
  std::istringstream in(merge);
  std::string a, b, rest;
  if (in >> a >> b && !(in >> rest)) return a + " " + b;
  throw std::runtime_error(path + BAD_MERGE);
}

// One merge of tokenizer.json's model.merges: an "a b" string or an ["a", "b"] pair (tokenizer.py _merge_pair).
std::string merge_key(const std::string& path, const Json& merge) {
  if (merge.type() == Json::Type::String) {
    return merge_key(path, merge.str());
  } else if (merge.type() == Json::Type::Array && merge.size() == 2 && merge[0].type() == Json::Type::String &&
             merge[1].type() == Json::Type::String) {
    return merge[0].str() + " " + merge[1].str();
  }
  throw std::runtime_error(path + BAD_MERGE);
}

}  // namespace

// tokenizer.py read_bpe: vocab.json + merges.txt when both exist, else tokenizer.json (what transformers 5 writes).
ClipTokenizer ClipTokenizer::from_dir(const std::string& dir, int max_length) {
  ClipTokenizer t;
  int rank = 0;  // a repeated pair keeps its last rank, as the Python dict does
  if (is_file(dir + "/vocab.json") && is_file(dir + "/merges.txt")) {
    Json vocab = Json::parse_file(dir + "/vocab.json");
    for (const auto& [token, id] : vocab.object()) t.vocab_[token] = id.integer();
    std::ifstream merges(dir + "/merges.txt");
    std::string line;
    while (std::getline(merges, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || line.rfind("#version", 0) == 0) continue;
      t.ranks_[merge_key(dir + "/merges.txt", line)] = rank++;
    }
  } else if (is_file(dir + "/tokenizer.json")) {
    const std::string path = dir + "/tokenizer.json";
    Json spec = Json::parse_file(path);
    auto is = [](const Json& j, const char* key, Json::Type type) { return j.has(key) && j[key].type() == type; };
    const bool has_model = spec.type() == Json::Type::Object && is(spec, "model", Json::Type::Object);
    const std::string kind = has_model && is(spec["model"], "type", Json::Type::String) ? spec["model"]["type"].str() : "";
    if (kind != "BPE")
      throw std::runtime_error(path + " holds a '" + kind + "' tokenizer model, not a BPE one; turbo-edge needs a CLIP BPE tokenizer");
    if (!is(spec["model"], "vocab", Json::Type::Object) || !is(spec["model"], "merges", Json::Type::Array))
      throw std::runtime_error(path + "'s BPE model lacks its vocab (an object) or merges (a list); save the tokenizer again");
    const Json& model = spec["model"];
    const std::string suffix = is(model, "end_of_word_suffix", Json::Type::String) ? model["end_of_word_suffix"].str() : "";
    if (model.has("end_of_word_suffix") && suffix != EOW)
      throw std::runtime_error(path + "'s BPE ends words with '" + suffix + "', not CLIP's '</w>'; turbo-edge needs a CLIP BPE tokenizer");
    for (const auto& [token, id] : model["vocab"].object()) t.vocab_[token] = id.integer();
    if (spec.has("added_tokens"))  // the special tokens, which some writers keep out of model.vocab
      for (const Json& added : spec["added_tokens"].array()) t.vocab_.emplace(added["content"].str(), added["id"].integer());
    for (const Json& merge : model["merges"].array()) t.ranks_[merge_key(path, merge)] = rank++;
  } else {
    throw std::runtime_error(dir + " holds neither tokenizer.json nor vocab.json + merges.txt; save a CLIP tokenizer there "
                             "(tokenizer.save_pretrained)");
  }
  if (!t.vocab_.count(BOS) || !t.vocab_.count(EOS))
    throw std::runtime_error(dir + ": the tokenizer vocabulary lacks <|startoftext|> or <|endoftext|>: it is not a CLIP tokenizer's");
  if (max_length < 2) throw std::runtime_error("max_length must be >= 2");
  t.max_length_ = max_length;
  t.bos_ = t.vocab_[BOS];
  t.eos_ = t.vocab_[EOS];
  return t;
}

Encoding ClipTokenizer::encode(const std::string& text) const {
  Encoding enc;
  std::vector<long long> body;
  for (const std::string& word : pre_tokenize(text)) {
    std::vector<std::string> pieces = bpe(word);
    if (pieces.size() != 1) enc.unknown_words.push_back(word);
    for (const auto& p : pieces) {
      auto it = vocab_.find(p);
      body.push_back(it == vocab_.end() ? eos_ : it->second);
    }
  }
  size_t room = static_cast<size_t>(max_length_ - 2);
  enc.truncated = body.size() > room;
  if (enc.truncated) body.resize(room);
  enc.ids.push_back(bos_);
  enc.ids.insert(enc.ids.end(), body.begin(), body.end());
  enc.ids.push_back(eos_);
  enc.ids.resize(static_cast<size_t>(max_length_), eos_);
  return enc;
}

}  // namespace turbo_edge
