#include "cli/table.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace orch::cli {

bool ShouldUseColor(bool is_tty, const char* no_color) { return is_tty && no_color == nullptr; }

bool StdoutWantsColor() {
  return ShouldUseColor(isatty(STDOUT_FILENO) == 1, std::getenv("NO_COLOR"));
}

std::string Colorize(const std::string& text, Color color, bool enabled) {
  if (!enabled || color == Color::kNone) return text;
  const char* code = "";
  switch (color) {
    case Color::kNone:
      return text;
    case Color::kRed:
      code = "31";
      break;
    case Color::kGreen:
      code = "32";
      break;
    case Color::kYellow:
      code = "33";
      break;
    case Color::kBlue:
      code = "34";
      break;
    case Color::kGray:
      code = "90";
      break;
    case Color::kBold:
      code = "1";
      break;
  }
  return std::string("\033[") + code + "m" + text + "\033[0m";
}

Color StatusColor(const std::string& status) {
  if (status == "succeeded") return Color::kGreen;
  if (status == "failed" || status == "lost" || status == "timeout" || status == "spawn_failed") {
    return Color::kRed;
  }
  if (status == "running") return Color::kBlue;
  if (status == "queued" || status == "transient" || status == "interrupted") return Color::kYellow;
  if (status == "cancelled") return Color::kGray;
  return Color::kNone;
}

size_t DisplayWidth(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) {
    if ((c & 0xC0) != 0x80) ++n;  // count lead bytes, skip continuation bytes
  }
  return n;
}

namespace {

// The longest prefix of `s` with at most `width` code points.
std::string CutToWidth(const std::string& s, size_t width) {
  size_t points = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (points == width) return s.substr(0, i);
      ++points;
    }
  }
  return s;
}

}  // namespace

Table::Table(std::vector<std::string> headers)
    : headers_(std::move(headers)),
      right_(headers_.size(), false),
      max_width_(headers_.size(), 0) {}

void Table::AlignRight(size_t column) {
  if (column < right_.size()) right_[column] = true;
}

void Table::SetMaxWidth(size_t column, size_t width) {
  if (column < max_width_.size()) max_width_[column] = width;
}

void Table::AddRow(std::vector<Cell> cells) {
  cells.resize(headers_.size(), Cell(""));
  for (size_t i = 0; i < cells.size(); ++i) {
    // Control characters would break the layout (argv may hold newlines).
    for (char& c : cells[i].text) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    }
    size_t max = max_width_[i];
    if (max > 1 && DisplayWidth(cells[i].text) > max) {
      cells[i].text = CutToWidth(cells[i].text, max - 1) + "…";
    }
  }
  rows_.push_back(std::move(cells));
}

std::string Table::Render(bool color) const {
  const size_t n = headers_.size();
  std::vector<size_t> width(n, 0);
  for (size_t i = 0; i < n; ++i) width[i] = DisplayWidth(headers_[i]);
  for (const auto& row : rows_) {
    for (size_t i = 0; i < n; ++i) width[i] = std::max(width[i], DisplayWidth(row[i].text));
  }
  auto line = [&](const std::vector<Cell>& cells) {
    std::string out;
    for (size_t i = 0; i < n; ++i) {
      const std::string& text = cells[i].text;
      size_t pad = width[i] - DisplayWidth(text);
      bool last = i + 1 == n;
      if (i > 0) out += "  ";
      if (right_[i]) out.append(pad, ' ');
      out += Colorize(text, cells[i].color, color);
      if (!right_[i] && !last) out.append(pad, ' ');
    }
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::vector<Cell> header;
  for (const auto& h : headers_) header.emplace_back(h, Color::kBold);
  std::string out = line(header);
  for (const auto& row : rows_) out += line(row);
  return out;
}

std::optional<TimePoint> ParseRfc3339(const std::string& text) {
  int year, month, day, hour, minute, second, consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &year, &month, &day, &hour,
                  &minute, &second, &consumed) != 6 ||
      consumed != 19) {
    return std::nullopt;
  }
  size_t pos = 19;
  int64_t nanos = 0;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    int64_t scale = 100000000;
    size_t digits = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      nanos += (text[pos] - '0') * scale;
      scale /= 10;
      ++pos;
      ++digits;
    }
    if (digits == 0) return std::nullopt;
  }
  int64_t offset_s = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    int oh, om, n = 0;
    if (std::sscanf(text.c_str() + pos + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5) {
      return std::nullopt;
    }
    offset_s = (int64_t{oh} * 3600 + int64_t{om} * 60) * (text[pos] == '+' ? 1 : -1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != text.size() || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 ||
      minute > 59 || second > 60) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  time_t secs = timegm(&tm);
  auto tp = std::chrono::system_clock::from_time_t(secs - offset_s);
  return tp + std::chrono::duration_cast<std::chrono::system_clock::duration>(
                  std::chrono::nanoseconds(nanos));
}

namespace {

// "3s", "5m", "2h", "4d": the largest unit that fits, rounded down.
std::string CoarseSpan(int64_t seconds) {
  if (seconds < 60) return std::to_string(seconds) + "s";
  if (seconds < 3600) return std::to_string(seconds / 60) + "m";
  if (seconds < 86400) return std::to_string(seconds / 3600) + "h";
  return std::to_string(seconds / 86400) + "d";
}

}  // namespace

std::string RelativeTime(TimePoint when, TimePoint now) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - when).count();
  if (ms >= 0) return CoarseSpan(ms / 1000) + " ago";
  return "in " + CoarseSpan((-ms + 999) / 1000);  // round up: "in 0s" would read as now
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
  char buf[32];
  if (seconds < 1) {
    std::snprintf(buf, sizeof buf, "%lldms", static_cast<long long>(seconds * 1000));
    return buf;
  }
  if (seconds < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", std::floor(seconds * 10) / 10);
    return buf;
  }
  auto s = static_cast<long long>(seconds);
  if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  } else if (s < 86400) {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lldd%02lldh", s / 86400, (s % 86400) / 3600);
  }
  return buf;
}

std::string FormatBytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

}  // namespace orch::cli
