#include "cli/job_format.h"

#include <cstring>
#include <sstream>

#include "base/text_escape.h"

namespace orch::cli {

using nlohmann::json;

namespace {

// Every string from the server is shown through these: names, argv, env,
// cwd, errors and reasons are the submitter's text, and a newline or an
// escape sequence in them must neither break a table nor reach the
// terminal of whoever looks. Strings are escaped (EscapeControls); other
// values print as JSON with every non-ASCII character as \uXXXX.
std::string Shown(const std::string& text) { return EscapeControls(text); }
std::string Shown(const json& value) {
  if (value.is_string()) return EscapeControls(value.get_ref<const std::string&>());
  return value.dump(-1, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace);
}

// The field as display text: strings escaped, numbers and booleans
// formatted, missing and null as "-".
std::string Text(const json& obj, const char* key) {
  if (!obj.is_object()) return "-";
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return "-";
  if (it->is_boolean()) return it->get<bool>() ? "yes" : "no";
  if (it->is_number_float()) {
    std::ostringstream s;
    s << it->get<double>();
    return s.str();
  }
  return Shown(*it);
}

bool Has(const json& obj, const char* key) {
  return obj.is_object() && obj.contains(key) && !obj.at(key).is_null();
}

int64_t Int(const json& obj, const char* key, int64_t fallback = 0) {
  if (!Has(obj, key) || !obj.at(key).is_number()) return fallback;
  return obj.at(key).get<int64_t>();
}

double Num(const json& obj, const char* key, double fallback = 0) {
  if (!Has(obj, key) || !obj.at(key).is_number()) return fallback;
  return obj.at(key).get<double>();
}

// "5m ago" for an RFC 3339 field; the raw text when unparsable; "-" when null.
std::string Ago(const json& obj, const char* key, TimePoint now) {
  std::string t = Text(obj, key);
  if (t == "-") return t;
  auto tp = ParseRfc3339(t);
  return tp ? RelativeTime(*tp, now) : t;
}

// "2026-11-28T05:42:29.123Z (5m ago)" for the detail view.
std::string When(const json& obj, const char* key, TimePoint now) {
  std::string t = Text(obj, key);
  if (t == "-") return t;
  auto tp = ParseRfc3339(t);
  return tp ? t + " (" + RelativeTime(*tp, now) + ")" : t;
}

std::string SignalName(int64_t sig) {
  const char* abbrev = sig > 0 && sig < 65 ? sigabbrev_np(static_cast<int>(sig)) : nullptr;
  return abbrev != nullptr ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

std::string JoinIds(const json& ids) {
  std::string out;
  if (!ids.is_array()) return out;
  for (const auto& id : ids) {
    if (!out.empty()) out += ", ";
    out += Shown(id);
  }
  return out;
}

}  // namespace

std::string ExitText(const json& obj) {
  if (Has(obj, "signal")) {
    int64_t sig = Int(obj, "signal");
    return "signal " + std::to_string(sig) + " (" + SignalName(sig) + ")";
  }
  if (Has(obj, "exit_code")) return "exit " + Text(obj, "exit_code");
  return "-";
}

std::string QuoteArgv(const json& argv) {
  std::string out;
  if (!argv.is_array()) return out;
  for (const auto& a : argv) {
    std::string w = a.is_string() ? a.get<std::string>() : Shown(a);
    if (!out.empty()) out += ' ';
    if (NeedsEscaping(w)) {
      // bash's $'...' reads EscapeControls' escapes back as the same bytes.
      out += "$'";
      for (char c : EscapeControls(w)) {
        if (c == '\'') out += '\\';
        out += c;
      }
      out += '\'';
      continue;
    }
    bool plain = !w.empty() && w.find_first_not_of(
                                   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789-_./=:,+@%") == std::string::npos;
    if (plain) {
      out += w;
      continue;
    }
    out += '\'';
    for (char c : w) {
      if (c == '\'') {
        out += "'\\''";
      } else {
        out += c;
      }
    }
    out += '\'';
  }
  return out;
}

std::string ApiErrorText(long status, const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("error") && j["error"].is_object()) {
    const json& e = j["error"];
    std::string msg = Text(e, "message"), code = Text(e, "code");
    if (msg == "-") msg = "HTTP " + std::to_string(status);
    return code == "-" ? msg : msg + " (" + code + ")";
  }
  std::string first = body.substr(0, body.find('\n'));
  bool cut = first.size() > 200;
  first = Shown(first.substr(0, 200)) + (cut ? "…" : "");
  return first.empty() ? "HTTP " + std::to_string(status)
                       : "HTTP " + std::to_string(status) + ": " + first;
}

std::string DescribeBlockedBy(const json& b, TimePoint now) {
  if (!b.is_object()) return "";
  std::string reason = Text(b, "reason");
  if (reason == "max_concurrency") {
    std::string held = JoinIds(b.value("held_by", json::array()));
    return "max_concurrency reached" + (held.empty() ? "" : ": slots held by run " + held);
  }
  if (reason == "serial_key") {
    std::string s = "serial_key \"" + Text(b, "key") + "\" is held by run " + Text(b, "run_id");
    if (Has(b, "pid")) {
      s += " (pid " + Text(b, "pid");
      if (Has(b, "alive"))
        s += b["alive"].is_boolean() && b["alive"].get<bool>() ? ", alive" : ", not alive";
      s += ")";
    }
    return s;
  }
  if (reason == "not_before") {
    std::string until = Text(b, "until");
    auto tp = ParseRfc3339(until);
    return "waiting until " + until + (tp ? " (" + RelativeTime(*tp, now) + ")" : "");
  }
  if (reason == "paused") return "the queue is paused";
  return Shown(b);
}

std::string RenderQueue(const json& q, TimePoint now, bool color) {
  std::ostringstream out;
  const json counts = q.value("counts", json::object());
  if (q.value("paused", false)) out << Colorize("queue is PAUSED", Color::kYellow, color) << "\n";
  out << "jobs:       ";
  bool first = true;
  for (const char* s : {"queued", "running", "succeeded", "failed", "cancelled"}) {
    if (!first) out << "  ";
    first = false;
    out << Colorize(s, StatusColor(s), color && Int(counts, s) > 0) << " " << Int(counts, s);
  }
  out << "\n";
  out << "limits:     max_concurrency " << Text(q, "max_concurrency") << ", serial gate "
      << (q.value("serial_gate_enabled", true) ? "on" : "off") << "\n";
  if (Has(q, "oldest_queued_age_s")) {
    out << "oldest:     queued for " << FormatDuration(Num(q, "oldest_queued_age_s")) << "\n";
  }

  const json running = q.value("running", json::array());
  out << "\nrunning (" << running.size() << "):\n";
  if (running.empty()) {
    out << "  none\n";
  } else {
    Table t({"JOB", "RUN", "NODE", "PID", "SERIAL KEY", "STARTED", "RUNTIME", "CPU", "MEM",
             "IDLE"});
    for (int col : {0, 1, 3, 6, 7, 8, 9}) t.AlignRight(col);
    for (const auto& r : running) {
      t.AddRow({Text(r, "id"), Text(r, "run_id"), Text(r, "node_id"), Text(r, "pid"),
                Text(r, "serial_key"), Ago(r, "started_at", now),
                Has(r, "runtime_s") ? FormatDuration(Num(r, "runtime_s")) : "-",
                Has(r, "cpu_s") ? FormatDuration(Num(r, "cpu_s")) : "-",
                Has(r, "mem_bytes") ? FormatBytes(Num(r, "mem_bytes")) : "-",
                Has(r, "idle_s") ? FormatDuration(Num(r, "idle_s")) : "-"});
    }
    out << t.Render(color);
  }

  if (q.contains("cluster") && q["cluster"].is_object()) {
    const json& c = q["cluster"];
    const json nodes = c.value("nodes", json::array());
    out << "\nnodes (" << nodes.size() << ", " << Text(c, "backend") << ", lease "
        << Text(c, "lease_s") << "s; this is " << Text(c, "node_id")
        << (c.value("lease_held", true) ? "" : ", WITHOUT A LEASE") << "):\n";
    Table t({"NODE", "STATE", "RUNNING", "HEARTBEAT", "INCARNATION"});
    t.AlignRight(2);
    for (const auto& n : nodes) {
      bool alive = n.value("alive", false);
      t.AddRow({Text(n, "node_id"),
                Table::Cell(alive ? "alive" : "lease over", alive ? Color::kGreen : Color::kRed),
                Text(n, "running"), Ago(n, "heartbeat_at", now), Text(n, "incarnation")});
    }
    if (!nodes.empty()) out << t.Render(color);
  }

  if (q.contains("cgroup") && q["cgroup"].is_object()) {
    const json& c = q["cgroup"];
    out << "\ncgroups:    mode " << Text(c, "mode")
        << (Has(c, "root") ? ", runs under " + Text(c, "root") : std::string()) << " ("
        << Text(c, "why") << ")\n";
  }
  if (q.contains("reaper") && q["reaper"].is_object()) {
    const json& r = q["reaper"];
    out << "\nreaper:     every " << Text(r, "interval_ms") << "ms, last tick "
        << Ago(r, "last_tick_at", now) << ", sanitize "
        << (r.value("sanitize_enabled", true) ? "on" : "off") << "\n";
    out << "            ticks " << Text(r, "ticks_total") << "  reaped " << Text(r, "reaped_total")
        << "  lost " << Text(r, "lost_total") << "  timeouts " << Text(r, "timeouts_total")
        << "  orphans " << Text(r, "orphans_total") << "  impossible_queued "
        << Text(r, "impossible_queued_total") << "  errors " << Text(r, "errors_total") << "\n";
  }
  if (q.contains("supervisor") && q["supervisor"].is_object()) {
    const json& s = q["supervisor"];
    out << "supervisor: version " << Text(s, "version") << ", pid " << Text(s, "pid") << ", up "
        << (Has(s, "uptime_s") ? FormatDuration(Num(s, "uptime_s")) : "-") << ", incarnation "
        << Text(s, "incarnation") << "\n";
  }
  return out.str();
}

std::string RenderJobList(const json& page, TimePoint now, bool color) {
  const json jobs = page.value("jobs", json::array());
  std::ostringstream out;
  if (jobs.empty()) {
    out << "no jobs\n";
  } else {
    Table t({"ID", "NAME", "STATUS", "PRI", "TRIES", "SERIAL KEY", "CREATED", "RESULT", "COMMAND"});
    t.AlignRight(0);
    t.AlignRight(3);
    t.AlignRight(4);
    t.SetMaxWidth(1, 24);
    t.SetMaxWidth(5, 20);
    t.SetMaxWidth(8, 60);
    for (const auto& j : jobs) {
      std::string status = Text(j, "status");
      t.AddRow({Text(j, "id"), Text(j, "name"), Table::Cell(status, StatusColor(status)),
                Text(j, "priority"), Text(j, "attempts") + "/" + Text(j, "max_attempts"),
                Text(j, "serial_key"), Ago(j, "created_at", now), ExitText(j),
                QuoteArgv(j.value("argv", json::array()))});
    }
    out << t.Render(color);
  }
  if (Has(page, "next_after_id")) {
    out << "more: orchestrator jobs --after " << Text(page, "next_after_id") << "\n";
  }
  return out.str();
}

std::string RenderJob(const json& j, TimePoint now, bool color) {
  std::ostringstream out;
  std::string status = Text(j, "status");
  out << "job " << Text(j, "id");
  std::string name = Text(j, "name");
  if (name != "-" && !name.empty()) out << "  " << name;
  out << "  " << Colorize(status, StatusColor(status), color) << "\n";

  Table f({"", ""});  // key/value pairs; the empty header line is dropped below
  auto field = [&](const char* k, const std::string& v) { f.AddRow({std::string("  ") + k, v}); };
  field("command", QuoteArgv(j.value("argv", json::array())));
  field("cwd", Text(j, "cwd"));
  if (j.contains("env") && j["env"].is_object() && !j["env"].empty()) {
    std::string env;
    for (const auto& [k, v] : j["env"].items()) {
      if (!env.empty()) env += " ";
      env += Shown(k) + "=" + Shown(v);
    }
    field("env", env);
  }
  field("priority", Text(j, "priority"));
  field("serial key", Text(j, "serial_key"));
  field("attempts", Text(j, "attempts") + " of " + Text(j, "max_attempts"));
  field("timeout", Has(j, "timeout_s") ? FormatDuration(Num(j, "timeout_s")) : "none");
  if (Has(j, "stall_timeout_s")) field("stall timeout", FormatDuration(Num(j, "stall_timeout_s")));
  std::string limits;
  if (Has(j, "memory_max")) limits += "memory " + FormatBytes(Num(j, "memory_max"));
  if (Has(j, "cpu_max")) limits += (limits.empty() ? "" : ", ") + Text(j, "cpu_max") + " cores";
  if (Has(j, "pids_max")) limits += (limits.empty() ? "" : ", ") + Text(j, "pids_max") + " processes";
  if (!limits.empty()) field("limits", limits);
  if (Has(j, "idempotency_key")) field("idempotency", Text(j, "idempotency_key"));
  field("created", When(j, "created_at", now));
  if (status == "queued") field("not before", When(j, "not_before", now));
  field("started", When(j, "started_at", now));
  field("finished", When(j, "finished_at", now));
  if (Has(j, "run_id")) field("run", Text(j, "run_id") + " (pid " + Text(j, "pid") + ")");
  if (Has(j, "outcome") || Has(j, "exit_code") || Has(j, "signal")) {
    field("result", Text(j, "outcome") + ", " + ExitText(j));
  }
  if (Has(j, "error")) field("error", Text(j, "error"));
  if (Has(j, "blocked_by")) field("blocked by", DescribeBlockedBy(j["blocked_by"], now));
  std::string fields = f.Render(false);
  out << fields.substr(fields.find('\n') + 1);

  const json runs = j.value("runs", json::array());
  if (!runs.empty()) {
    out << "\nruns:\n";
    Table t({"RUN", "TRY", "PID", "STARTED", "DURATION", "CPU", "MEM PEAK", "OUTCOME", "RESULT",
             "REASON"});
    for (int col : {0, 1, 2, 4, 5, 6}) t.AlignRight(col);
    t.SetMaxWidth(9, 60);
    for (const auto& r : runs) {
      std::string duration = "-";
      auto start = ParseRfc3339(Text(r, "started_at"));
      auto end = ParseRfc3339(Text(r, "ended_at"));
      if (start) {
        auto stop = end ? *end : now;
        duration = FormatDuration(std::chrono::duration<double>(stop - *start).count());
        if (!end) duration += "+";
      }
      std::string outcome = Has(r, "outcome") ? Text(r, "outcome") : "running";
      std::string oom = Has(r, "oom_kills") && Num(r, "oom_kills") > 0
                            ? " (" + Text(r, "oom_kills") + " OOM kills)"
                            : "";
      t.AddRow({Text(r, "id"), Text(r, "attempt"), Text(r, "pid"), Ago(r, "started_at", now),
                duration, Has(r, "cpu_usec") ? FormatDuration(Num(r, "cpu_usec") / 1e6) : "-",
                Has(r, "mem_peak_bytes") ? FormatBytes(Num(r, "mem_peak_bytes")) + oom : "-",
                Table::Cell(outcome, StatusColor(outcome)), ExitText(r), Text(r, "reason")});
    }
    out << t.Render(color);
  }
  return out.str();
}

}  // namespace orch::cli
