#include "cli/table.h"

#include <gtest/gtest.h>

namespace orch::cli {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(Table, PadsColumnsToTheWidestCellWithoutTrailingBlanks) {
  Table t({"ID", "NAME", "STATUS"});
  t.AddRow({"1", "backup", "running"});
  t.AddRow({"12", "x", "failed"});
  EXPECT_EQ(
      "ID  NAME    STATUS\n"
      "1   backup  running\n"
      "12  x       failed\n",
      t.Render(false));
}

TEST(Table, RightAlignedColumnsPadOnTheLeft) {
  Table t({"ID", "CMD"});
  t.AlignRight(0);
  t.AddRow({"7", "true"});
  t.AddRow({"123", "false"});
  EXPECT_EQ(
      " ID  CMD\n"
      "  7  true\n"
      "123  false\n",
      t.Render(false));
}

TEST(Table, MissingCellsAreBlankAndExtraCellsDropped) {
  Table t({"A", "B"});
  t.AddRow({"1"});
  t.AddRow({"2", "3", "4"});
  EXPECT_EQ("A  B\n1\n2  3\n", t.Render(false));
}

TEST(Table, ColourDoesNotChangeAlignment) {
  Table t({"STATUS", "ID"});
  t.AddRow({Table::Cell("ok", Color::kGreen), "1"});
  t.AddRow({Table::Cell("failed", Color::kRed), "2"});
  std::string out = t.Render(true);
  EXPECT_NE(std::string::npos, out.find("\033[32mok\033[0m      1\n")) << out;
  EXPECT_NE(std::string::npos, out.find("\033[31mfailed\033[0m  2\n")) << out;
  EXPECT_NE(std::string::npos, out.find("\033[1mSTATUS\033[0m")) << out;
}

TEST(Table, WithoutColourThereAreNoEscapes) {
  Table t({"STATUS"});
  t.AddRow({Table::Cell("failed", Color::kRed)});
  EXPECT_EQ(std::string::npos, t.Render(false).find('\033'));
}

TEST(Table, LongCellsAreCutToTheMaxWidthWithAnEllipsis) {
  Table t({"CMD", "X"});
  t.SetMaxWidth(0, 6);
  t.AddRow({"abcdefghij", "1"});
  EXPECT_EQ("CMD     X\nabcde…  1\n", t.Render(false));
}

TEST(Table, UnicodeWidthCountsCodePointsNotBytes) {
  Table t({"N", "X"});
  t.AddRow({"héé", "1"});
  t.AddRow({"abcd", "2"});
  EXPECT_EQ("N     X\nhéé   1\nabcd  2\n", t.Render(false));
  EXPECT_EQ(3u, DisplayWidth("héé"));
}

TEST(Table, ControlCharactersInCellsBecomeSpaces) {
  Table t({"CMD"});
  t.AddRow({"echo a\nb"});
  EXPECT_EQ("CMD\necho a b\n", t.Render(false));
}

TEST(Color, OnlyForATerminalWithoutNoColor) {
  EXPECT_TRUE(ShouldUseColor(true, nullptr));
  EXPECT_FALSE(ShouldUseColor(false, nullptr));
  EXPECT_FALSE(ShouldUseColor(true, "1"));
  EXPECT_FALSE(ShouldUseColor(true, ""));
}

TEST(Color, StatusWordsHaveColours) {
  EXPECT_EQ(Color::kGreen, StatusColor("succeeded"));
  EXPECT_EQ(Color::kRed, StatusColor("failed"));
  EXPECT_EQ(Color::kBlue, StatusColor("running"));
  EXPECT_EQ(Color::kNone, StatusColor("whatever"));
}

TEST(Rfc3339, ParsesUtcWithMilliseconds) {
  auto t = ParseRfc3339("2026-11-28T05:42:29.123Z");
  ASSERT_TRUE(t.has_value());
  auto ms = std::chrono::duration_cast<milliseconds>(t->time_since_epoch()).count();
  EXPECT_EQ(1795844549123, ms);
}

TEST(Rfc3339, ParsesWithoutFractionAndWithOffsets) {
  auto utc = ParseRfc3339("2026-11-28T05:42:29Z");
  auto plus = ParseRfc3339("2026-11-28T07:42:29+02:00");
  auto minus = ParseRfc3339("2026-11-28T04:42:29-01:00");
  ASSERT_TRUE(utc && plus && minus);
  EXPECT_EQ(*utc, *plus);
  EXPECT_EQ(*utc, *minus);
}

TEST(Rfc3339, RejectsOtherText) {
  EXPECT_FALSE(ParseRfc3339("").has_value());
  EXPECT_FALSE(ParseRfc3339("yesterday").has_value());
  EXPECT_FALSE(ParseRfc3339("2026-11-28T05:42:29").has_value());  // no zone
  EXPECT_FALSE(ParseRfc3339("2026-13-28T05:42:29Z").has_value());
  EXPECT_FALSE(ParseRfc3339("2026-11-28T05:42:29.Z").has_value());
  EXPECT_FALSE(ParseRfc3339("2026-11-28T05:42:29Zjunk").has_value());
}

TEST(RelativeTime, PicksTheLargestWholeUnit) {
  TimePoint now = std::chrono::system_clock::from_time_t(1800000000);
  EXPECT_EQ("0s ago", RelativeTime(now, now));
  EXPECT_EQ("3s ago", RelativeTime(now - milliseconds(3900), now));
  EXPECT_EQ("59s ago", RelativeTime(now - seconds(59), now));
  EXPECT_EQ("1m ago", RelativeTime(now - seconds(60), now));
  EXPECT_EQ("5m ago", RelativeTime(now - seconds(5 * 60 + 59), now));
  EXPECT_EQ("2h ago", RelativeTime(now - seconds(2 * 3600 + 10), now));
  EXPECT_EQ("3d ago", RelativeTime(now - seconds(3 * 86400 + 5), now));
}

TEST(RelativeTime, FutureTimesReadAsIn) {
  TimePoint now = std::chrono::system_clock::from_time_t(1800000000);
  EXPECT_EQ("in 10s", RelativeTime(now + seconds(10), now));
  EXPECT_EQ("in 1s", RelativeTime(now + milliseconds(200), now));
  EXPECT_EQ("in 2m", RelativeTime(now + seconds(150), now));
}

TEST(FormatBytes, BinaryUnits) {
  EXPECT_EQ("512 B", FormatBytes(512));
  EXPECT_EQ("1.5 KiB", FormatBytes(1536));
  EXPECT_EQ("256.0 MiB", FormatBytes(268435456));
  EXPECT_EQ("2.0 GiB", FormatBytes(2147483648.0));
}

TEST(FormatDuration, ScalesUnits) {
  EXPECT_EQ("0ms", FormatDuration(0));
  EXPECT_EQ("850ms", FormatDuration(0.85));
  EXPECT_EQ("4.2s", FormatDuration(4.25));
  EXPECT_EQ("2m05s", FormatDuration(125));
  EXPECT_EQ("1h02m", FormatDuration(3720));
  EXPECT_EQ("3d04h", FormatDuration(3 * 86400 + 4 * 3600 + 59));
  EXPECT_EQ("0ms", FormatDuration(-5));
}

}  // namespace
}  // namespace orch::cli
