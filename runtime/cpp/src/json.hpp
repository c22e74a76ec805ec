// A small JSON reader for the bundle's manifest and tokenizer files (RFC 8259 subset the exporter writes:
// objects, arrays, strings with escapes incl. \uXXXX surrogate pairs, numbers, true/false/null).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace turbo_edge {

class Json {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };

  static Json parse(const std::string& text);
  static Json parse_file(const std::string& path);

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool has(const std::string& key) const;
  const Json& operator[](const std::string& key) const;  // throws naming the missing key
  const Json& operator[](size_t index) const;
  size_t size() const;
  double number() const;
  long long integer() const;
  bool boolean() const;
  const std::string& str() const;
  const std::map<std::string, Json>& object() const;
  const std::vector<Json>& array() const;

  Type type_ = Type::Null;
  bool bool_ = false;
  double number_ = 0.0;
  std::string string_;
  std::vector<Json> array_;
  std::map<std::string, Json> object_;
};

}  // namespace turbo_edge
