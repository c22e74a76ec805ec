#include "json.hpp"

#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>

namespace turbo_edge {
namespace {

class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}

  Json document() {
    Json v = value();
    skip_ws();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  const std::string& s_;
  size_t i_ = 0;
  size_t depth_ = 0;  // open objects / arrays: bounded, so a "[[[[..." file is refused, not a stack overflow
  static constexpr size_t kMaxDepth = 512;

  struct Nest {
    size_t& depth;
    ~Nest() { --depth; }
  };

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("invalid JSON at byte " + std::to_string(i_) + ": " + what);
  }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  bool consume(const char* word) {
    size_t n = std::char_traits<char>::length(word);
    if (s_.compare(i_, n, word) != 0) return false;
    i_ += n;
    return true;
  }

  Json value() {
    skip_ws();
    if (i_ >= s_.size()) fail("unexpected end");
    Json v;
    char c = s_[i_];
    if ((c == '{' || c == '[') && depth_ >= kMaxDepth) fail("nested deeper than " + std::to_string(kMaxDepth) + " levels");
    if (c == '{' || c == '[') ++depth_;
    std::unique_ptr<Nest> nest(c == '{' || c == '[' ? new Nest{depth_} : nullptr);
    if (c == '{') {
      v.type_ = Json::Type::Object;
      ++i_;
      skip_ws();
      if (i_ < s_.size() && s_[i_] == '}') { ++i_; return v; }
      while (true) {
        skip_ws();
        if (i_ >= s_.size() || s_[i_] != '"') fail("expected a key");
        std::string key = string_literal();
        skip_ws();
        if (i_ >= s_.size() || s_[i_++] != ':') fail("expected ':'");
        v.object_[key] = value();
        skip_ws();
        if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
        if (i_ < s_.size() && s_[i_] == '}') { ++i_; return v; }
        fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      v.type_ = Json::Type::Array;
      ++i_;
      skip_ws();
      if (i_ < s_.size() && s_[i_] == ']') { ++i_; return v; }
      while (true) {
        v.array_.push_back(value());
        skip_ws();
        if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
        if (i_ < s_.size() && s_[i_] == ']') { ++i_; return v; }
        fail("expected ',' or ']'");
      }
    }
    if (c == '"') {
      v.type_ = Json::Type::String;
      v.string_ = string_literal();
      return v;
    }
    if (consume("true")) { v.type_ = Json::Type::Bool; v.bool_ = true; return v; }
    if (consume("false")) { v.type_ = Json::Type::Bool; return v; }
    if (consume("null")) return v;
    // Numbers: strtod is exact for the shortest round-trip repr Python's json writes.
    const char* start = s_.c_str() + i_;
    char* end = nullptr;
    double d = std::strtod(start, &end);
    if (end == start) fail("unexpected character");
    i_ += static_cast<size_t>(end - start);
    v.type_ = Json::Type::Number;
    v.number_ = d;
    return v;
  }

  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("short \\u escape");
    unsigned cp = static_cast<unsigned>(std::stoul(s_.substr(i_, 4), nullptr, 16));
    i_ += 4;
    return cp;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string string_literal() {
    ++i_;  // opening quote
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      char c = s_[i_++];
      if (c == '"') return out;
      if (c != '\\') { out += c; continue; }
      if (i_ >= s_.size()) fail("unterminated escape");
      char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00 && s_.compare(i_, 2, "\\u") == 0) {  // surrogate pair
            i_ += 2;
            unsigned low = hex4();
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
  }
};

const char* type_name(Json::Type t) {
  static const char* names[] = {"null", "bool", "number", "string", "array", "object"};
  return names[static_cast<int>(t)];
}

void expect(const Json& j, Json::Type t) {
  if (j.type_ != t) throw std::runtime_error(std::string("JSON value is a ") + type_name(j.type_) + ", expected a " + type_name(t));
}

}  // namespace

Json Json::parse(const std::string& text) { return Parser(text).document(); }

Json Json::parse_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  try {
    return parse(ss.str());
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": " + e.what());
  }
}

bool Json::has(const std::string& key) const { return type_ == Type::Object && object_.count(key) > 0; }

const Json& Json::operator[](const std::string& key) const {
  expect(*this, Type::Object);
  auto it = object_.find(key);
  if (it == object_.end()) throw std::runtime_error("JSON object has no key '" + key + "'");
  return it->second;
}

const Json& Json::operator[](size_t index) const {
  expect(*this, Type::Array);
  if (index >= array_.size()) throw std::runtime_error("JSON array index out of range");
  return array_[index];
}

size_t Json::size() const { return type_ == Type::Array ? array_.size() : object_.size(); }
double Json::number() const { expect(*this, Type::Number); return number_; }
long long Json::integer() const { expect(*this, Type::Number); return static_cast<long long>(number_); }
bool Json::boolean() const { expect(*this, Type::Bool); return bool_; }
const std::string& Json::str() const { expect(*this, Type::String); return string_; }
const std::map<std::string, Json>& Json::object() const { expect(*this, Type::Object); return object_; }
const std::vector<Json>& Json::array() const { expect(*this, Type::Array); return array_; }

}  // namespace turbo_edge
