#include "base/text_escape.h"

#include <gtest/gtest.h>

#include <string>

namespace orch {
namespace {

using namespace std::string_literals;

TEST(EscapeControls, PlainTextAndUtf8PassUnchanged) {
  EXPECT_EQ("backup-nightly /srv/data", EscapeControls("backup-nightly /srv/data"));
  EXPECT_EQ("héllo wörld ✓ 日本 😀", EscapeControls("héllo wörld ✓ 日本 😀"));
  EXPECT_EQ("", EscapeControls(""));
  EXPECT_FALSE(NeedsEscaping("héllo ✓ 😀 'quoted' \"x\" $HOME"));
}

TEST(EscapeControls, LineBreaksAndTabsBecomeTheirShellEscapes) {
  EXPECT_EQ("x\\n2026-01-01 forged", EscapeControls("x\n2026-01-01 forged"));
  EXPECT_EQ("a\\r\\tb", EscapeControls("a\r\tb"));
  EXPECT_TRUE(NeedsEscaping("a\nb"));
}

TEST(EscapeControls, BackslashIsEscapedSoTheResultIsUnambiguous) {
  EXPECT_EQ("a\\\\nb", EscapeControls("a\\nb"));  // a literal backslash-n
  EXPECT_NE(EscapeControls("a\\nb"), EscapeControls("a\nb"));
  EXPECT_TRUE(NeedsEscaping("C:\\x"));
}

TEST(EscapeControls, TerminalEscapesAndOtherControlBytesBecomeHex) {
  EXPECT_EQ("\\x1b[31mred\\x1b[0m", EscapeControls("\x1b[31mred\x1b[0m"));
  EXPECT_EQ("\\x00\\x07\\x08\\x7f", EscapeControls("\0\a\b\x7f"s));
  EXPECT_EQ("\\x1f ", EscapeControls("\x1f "));
}

TEST(EscapeControls, C1ControlsInUtf8AreEscaped) {
  // U+009B is CSI: some terminals treat it as ESC [.
  EXPECT_EQ("\\xc2\\x9b31m", EscapeControls("\xc2\x9b"s + "31m"));
  EXPECT_EQ("\\xc2\\x80", EscapeControls("\xc2\x80"));
  EXPECT_EQ("\xc2\xa0", EscapeControls("\xc2\xa0"));  // U+00A0 is printable
}

TEST(EscapeControls, BytesThatAreNotUtf8BecomeHex) {
  EXPECT_EQ("\\x9b", EscapeControls("\x9b"));                    // a lone C1 byte (CSI in Latin-1)
  EXPECT_EQ("\\xff\\xfe", EscapeControls("\xff\xfe"));           // never valid
  EXPECT_EQ("\\xc3(", EscapeControls("\xc3("));                  // lead byte without continuation
  EXPECT_EQ("\\xe2\\x82", EscapeControls("\xe2\x82"));           // cut short at the end
  EXPECT_EQ("\\xc0\\xaf", EscapeControls("\xc0\xaf"));           // overlong '/'
  EXPECT_EQ("\\xed\\xa0\\x80", EscapeControls("\xed\xa0\x80"));  // a surrogate
  EXPECT_EQ("\\xf4\\x90\\x80\\x80", EscapeControls("\xf4\x90\x80\x80"));  // above U+10FFFF
}

TEST(EscapeControls, EveryByteValueComesOutAsPrintableAscii) {
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  for (unsigned char c : EscapeControls(all)) {
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << static_cast<int>(c);
  }
  EXPECT_EQ("\\xc2\\x9ba\xe2\x9c\x93", EscapeControls("\xc2\x9b"s + "a\xe2\x9c\x93"));
}

}  // namespace
}  // namespace orch
