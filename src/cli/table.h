// Text output for people: aligned columns, relative times and durations, and
// the colour decision. Pure functions; nothing here touches the network.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace orch::cli {

using TimePoint = std::chrono::system_clock::time_point;

// ANSI SGR colours for table cells; kNone prints the text as is.
enum class Color { kNone, kRed, kGreen, kYellow, kBlue, kGray, kBold };

// True when colour escapes should be written: `is_tty` and NO_COLOR unset
// (`no_color` is getenv("NO_COLOR"), nullptr when unset).
bool ShouldUseColor(bool is_tty, const char* no_color);
// The same decision for this process's stdout.
bool StdoutWantsColor();

// `text` wrapped in the escape for `color` when `enabled`, else unchanged.
std::string Colorize(const std::string& text, Color color, bool enabled);

// The colour of a job status or run outcome word ("failed" → red, ...).
Color StatusColor(const std::string& status);

// Columns padded to their widest cell (widths count UTF-8 code points, so
// colour does not disturb alignment), separated by two spaces, no trailing
// blanks. Cells longer than a column's max width are cut with "…".
class Table {
 public:
  struct Cell {
    Cell(std::string t) : text(std::move(t)) {}  // NOLINT: implicit by design
    Cell(const char* t) : text(t) {}             // NOLINT
    Cell(std::string t, Color c) : text(std::move(t)), color(c) {}
    std::string text;
    Color color = Color::kNone;
  };

  explicit Table(std::vector<std::string> headers);
  // Numbers read better right-aligned.
  void AlignRight(size_t column);
  void SetMaxWidth(size_t column, size_t width);
  // Missing cells are blank; extra cells are dropped.
  void AddRow(std::vector<Cell> cells);
  size_t rows() const { return rows_.size(); }

  // The header line and one line per row, each ending in '\n'.
  std::string Render(bool color) const;

 private:
  std::vector<std::string> headers_;
  std::vector<bool> right_;
  std::vector<size_t> max_width_;  // 0 = unlimited
  std::vector<std::vector<Cell>> rows_;
};

// Number of UTF-8 code points in `s`.
size_t DisplayWidth(const std::string& s);

// "2026-11-28T05:42:29.123Z" (also without fraction, or with a +HH:MM
// offset) → time point; nullopt when the text is not RFC 3339.
std::optional<TimePoint> ParseRfc3339(const std::string& text);

// "3s ago", "5m ago", "2h ago", "4d ago"; "in 10s" for the future.
std::string RelativeTime(TimePoint when, TimePoint now);

// A span of seconds for people: "850ms", "4.2s", "2m05s", "1h02m", "3d04h".
std::string FormatDuration(double seconds);
// 1536 → "1.5 KiB"; whole bytes below 1 KiB.
std::string FormatBytes(double bytes);

}  // namespace orch::cli
