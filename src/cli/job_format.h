// How the client shows the API's JSON to people (SPEC §7 shapes): the queue,
// a page of jobs, one job with its runs. Pure functions of the JSON and the
// current time, so they are tested from strings; missing or null fields
// print as "-" rather than failing, since the server may be older or newer.
// Every string from the server is printed through EscapeControls, so job
// names, argv, env, cwd and errors can neither break a line nor send escape
// sequences to the terminal.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "cli/table.h"

namespace orch::cli {

// GET /queue: counts, paused, limits, the running table, reaper counters.
std::string RenderQueue(const nlohmann::json& queue, TimePoint now, bool color);

// GET /jobs: one row per job, then a hint for the next page when there is one.
std::string RenderJobList(const nlohmann::json& page, TimePoint now, bool color);

// GET /jobs/{id}: the job's fields, why it waits (blocked_by), its runs.
std::string RenderJob(const nlohmann::json& job, TimePoint now, bool color);

// One line on why a queued job is not running: "serial_key \"k\" is held by
// run 7 (pid 42, alive)". "" for null.
std::string DescribeBlockedBy(const nlohmann::json& blocked_by, TimePoint now);

// argv as a shell would need it typed: words with special characters are
// single-quoted, words with control characters (or a backslash, or bytes
// that are not UTF-8) are written $'...' with EscapeControls' escapes, as
// bash reads them. For display only; jobs are never run through a shell.
std::string QuoteArgv(const nlohmann::json& argv);

// The message of an API error body {"error":{"code","message"}}, as
// "message (code)"; the body's first line or "HTTP <status>" otherwise.
std::string ApiErrorText(long status, const std::string& body);

// Shell-style result of a job or run: "exit 0", "signal 9 (KILL)", or "-".
std::string ExitText(const nlohmann::json& obj);

}  // namespace orch::cli
