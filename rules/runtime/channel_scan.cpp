#include "rules/runtime/channel_scan.h"

#include <cctype>
#include <optional>

namespace vigil::rules {
namespace {

class Scanner {
 public:
  explicit Scanner(std::string_view s) : s_(s) {}

  std::vector<ChannelUse> run() {
    std::vector<ChannelUse> uses;
    char previous = 0;  // last significant character before the current token
    while (i_ < s_.size()) {
      char c = s_[i_];
      if (c == '\n') {
        ++line_, ++i_;
      } else if (std::isspace(static_cast<unsigned char>(c))) {
        ++i_;
      } else if (c == '-' && peek(1) == '-') {
        i_ += 2;
        if (!skip_long_bracket()) skip_to_line_end();
      } else if (c == '[' && long_bracket_level() >= 0) {
        skip_long_bracket();
        previous = ']';
      } else if (c == '"' || c == '\'') {
        skip_short_string();
        previous = c;
      } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t start = i_;
        while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_')) ++i_;
        if (s_.substr(start, i_ - start) == "notify" && previous != '.' && previous != ':') {
          if (auto use = literal_argument()) uses.push_back(*use);
        }
        previous = 'a';
      } else {
        previous = c;
        ++i_;
      }
    }
    return uses;
  }

 private:
  char peek(size_t ahead) const { return i_ + ahead < s_.size() ? s_[i_ + ahead] : 0; }

  void skip_to_line_end() {
    while (i_ < s_.size() && s_[i_] != '\n') ++i_;
  }

  void skip_blanks() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) {
      if (s_[i_] == '\n') ++line_;
      ++i_;
    }
  }

  // At '[': the level of a long bracket "[==[" or -1 when it is not one.
  int long_bracket_level() const {
    size_t j = i_ + 1;
    while (j < s_.size() && s_[j] == '=') ++j;
    return j < s_.size() && s_[j] == '[' ? static_cast<int>(j - i_ - 1) : -1;
  }

  bool skip_long_bracket() {
    if (i_ >= s_.size() || s_[i_] != '[') return false;
    int level = long_bracket_level();
    if (level < 0) return false;
    std::string close = "]" + std::string(static_cast<size_t>(level), '=') + "]";
    i_ += static_cast<size_t>(level) + 2;
    size_t end = s_.find(close, i_);
    if (end == std::string_view::npos) end = s_.size();
    for (size_t j = i_; j < end; ++j)
      if (s_[j] == '\n') ++line_;
    i_ = end == s_.size() ? end : end + close.size();
    return true;
  }

  // Returns the literal's text when it has no escapes.
  std::optional<std::string> skip_short_string() {
    char quote = s_[i_++];
    size_t start = i_;
    bool escaped = false;
    while (i_ < s_.size() && s_[i_] != quote && s_[i_] != '\n') {
      if (s_[i_] == '\\') {
        escaped = true;
        if (peek(1) == '\n') ++line_;
        ++i_;
      }
      ++i_;
    }
    std::string_view text = s_.substr(start, i_ - start);
    if (i_ < s_.size() && s_[i_] == quote) ++i_;
    if (escaped) return std::nullopt;
    return std::string(text);
  }

  // After `notify`: `("x"` or `"x"`.
  std::optional<ChannelUse> literal_argument() {
    skip_blanks();
    bool parenthesised = i_ < s_.size() && s_[i_] == '(';
    if (parenthesised) {
      ++i_;
      skip_blanks();
    }
    if (i_ >= s_.size() || (s_[i_] != '"' && s_[i_] != '\'')) return std::nullopt;
    int line = line_;
    auto text = skip_short_string();
    if (!text) return std::nullopt;
    if (parenthesised) {
      // Only a literal that is the whole argument names the channel: not "pag" .. suffix.
      skip_blanks();
      if (i_ >= s_.size() || (s_[i_] != ',' && s_[i_] != ')')) return std::nullopt;
    }
    return ChannelUse{line, *text};
  }

  std::string_view s_;
  size_t i_ = 0;
  int line_ = 1;
};

}  // namespace

std::vector<ChannelUse> literal_notify_channels(std::string_view source) { return Scanner(source).run(); }

std::string unknown_channel(const std::string& channel, const std::set<std::string>& configured) {
  std::string out = "unknown notifier channel '" + channel + "' (configured: ";
  const char* sep = "";
  for (const auto& c : configured) out += sep + c, sep = ", ";
  if (configured.empty()) out += "none";
  return out + ")";
}

}  // namespace vigil::rules
