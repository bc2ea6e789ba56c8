#include "base/text_escape.h"

namespace orch {
namespace {

bool Continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Length of the valid UTF-8 sequence at text[i] (1 to 4), or 0 when the
// byte there does not start one: overlong forms, surrogates and code points
// above U+10FFFF are invalid (RFC 3629 table).
size_t Utf8Length(std::string_view text, size_t i) {
  auto at = [&](size_t k) -> unsigned char {
    return i + k < text.size() ? static_cast<unsigned char>(text[i + k]) : 0;
  };
  unsigned char c = at(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return Continuation(at(1)) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    return at(1) >= lo && at(1) <= hi && Continuation(at(2)) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    return at(1) >= lo && at(1) <= hi && Continuation(at(2)) && Continuation(at(3)) ? 4 : 0;
  }
  return 0;
}

// True for the bytes at text[i] that EscapeControls rewrites; `*len` is how
// many bytes the decision covers.
bool Escaped(std::string_view text, size_t i, size_t* len) {
  unsigned char c = static_cast<unsigned char>(text[i]);
  if (c < 0x80) {
    *len = 1;
    return c < 0x20 || c == 0x7f || c == '\\';
  }
  size_t n = Utf8Length(text, i);
  if (n == 0) {
    *len = 1;
    return true;
  }
  *len = n;
  // U+0080..U+009F are 0xC2 0x80..0x9F.
  return c == 0xC2 && static_cast<unsigned char>(text[i + 1]) <= 0x9F;
}

}  // namespace

std::string EscapeControls(std::string_view text) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    size_t len = 1;
    if (!Escaped(text, i, &len)) {
      out.append(text.substr(i, len));
      i += len;
      continue;
    }
    for (size_t k = i; k < i + len; ++k) {
      unsigned char c = static_cast<unsigned char>(text[k]);
      switch (c) {
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '\\':
          out += "\\\\";
          break;
        default:
          out += "\\x";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
      }
    }
    i += len;
  }
  return out;
}

bool NeedsEscaping(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    size_t len = 1;
    if (Escaped(text, i, &len)) return true;
    i += len;
  }
  return false;
}

}  // namespace orch
