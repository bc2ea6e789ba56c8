// Logging to stderr through spdlog: "text" for people, "json" as one object
// per line with ts, level, msg and the structured fields given. Either way
// one event is one line: text escapes control characters in the message and
// in string fields (EscapeControls), JSON escapes them as JSON does.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace orch::log {

enum class Level { kTrace, kDebug, kInfo, kWarn, kError, kCritical, kOff };
using Fields = std::initializer_list<std::pair<std::string_view, nlohmann::json>>;

// Parses "trace|debug|info|warn|error|critical|off".
bool ParseLevel(std::string_view text, Level* out);

// (Re)configures the process logger; safe to call again on SIGHUP.
Status Setup(std::string_view level, std::string_view format);
void SetLevel(Level level);
bool Enabled(Level level);

void Write(Level level, std::string_view msg, Fields fields);
inline void Trace(std::string_view m, Fields f = {}) { Write(Level::kTrace, m, f); }
inline void Debug(std::string_view m, Fields f = {}) { Write(Level::kDebug, m, f); }
inline void Info(std::string_view m, Fields f = {}) { Write(Level::kInfo, m, f); }
inline void Warn(std::string_view m, Fields f = {}) { Write(Level::kWarn, m, f); }
inline void Error(std::string_view m, Fields f = {}) { Write(Level::kError, m, f); }

}  // namespace orch::log
