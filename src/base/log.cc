#include "base/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "base/clock.h"
#include "base/text_escape.h"

namespace orch::log {
namespace {

bool json_format = false;

spdlog::level::level_enum ToSpd(Level l) {
  switch (l) {
    case Level::kTrace: return spdlog::level::trace;
    case Level::kDebug: return spdlog::level::debug;
    case Level::kInfo: return spdlog::level::info;
    case Level::kWarn: return spdlog::level::warn;
    case Level::kError: return spdlog::level::err;
    case Level::kCritical: return spdlog::level::critical;
    case Level::kOff: return spdlog::level::off;
  }
  return spdlog::level::info;
}

const char* LevelName(Level l) {
  static const char* kNames[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  return kNames[static_cast<int>(l)];
}

std::string NowRfc3339() { return FormatRfc3339(Clock().NowMs()); }

std::shared_ptr<spdlog::logger> Logger() {
  static std::shared_ptr<spdlog::logger> logger = [] {
    auto l = std::make_shared<spdlog::logger>("orchestrator",
                                              std::make_shared<spdlog::sinks::stderr_sink_mt>());
    l->set_pattern("%v");
    l->set_level(spdlog::level::info);
    l->flush_on(spdlog::level::trace);
    return l;
  }();
  return logger;
}

}  // namespace

bool ParseLevel(std::string_view text, Level* out) {
  for (int i = 0; i <= static_cast<int>(Level::kOff); ++i) {
    if (text == LevelName(static_cast<Level>(i))) {
      *out = static_cast<Level>(i);
      return true;
    }
  }
  return false;
}

Status Setup(std::string_view level, std::string_view format) {
  Level l;
  if (!ParseLevel(level, &l)) return Status(Code::kInvalidArgument, "unknown log level");
  if (format != "text" && format != "json") {
    return Status(Code::kInvalidArgument, "unknown log format");
  }
  json_format = format == "json";
  SetLevel(l);
  return Status::Ok();
}

void SetLevel(Level level) { Logger()->set_level(ToSpd(level)); }

bool Enabled(Level level) { return Logger()->should_log(ToSpd(level)); }

void Write(Level level, std::string_view msg, Fields fields) {
  auto logger = Logger();
  if (!logger->should_log(ToSpd(level))) return;
  std::string line;
  if (json_format) {
    nlohmann::json j = {{"ts", NowRfc3339()}, {"level", LevelName(level)}, {"msg", msg}};
    for (const auto& [k, v] : fields) j[std::string(k)] = v;
    line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    // Job names, argv, paths and error texts come from API clients: a
    // newline in one would forge a whole event for whoever reads the journal,
    // an escape sequence would drive their terminal. Strings are escaped;
    // other values are JSON with every non-ASCII character as \uXXXX.
    line = NowRfc3339();
    line += ' ';
    line += LevelName(level);
    line += ' ';
    line += EscapeControls(msg);
    for (const auto& [k, v] : fields) {
      line += ' ';
      line += EscapeControls(k);
      line += '=';
      line += v.is_string() ? EscapeControls(v.get_ref<const std::string&>())
                            : v.dump(-1, ' ', /*ensure_ascii=*/true,
                                     nlohmann::json::error_handler_t::replace);
    }
  }
  logger->log(ToSpd(level), line);
}

}  // namespace orch::log
