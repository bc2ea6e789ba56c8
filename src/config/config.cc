#include "config/config.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <variant>

#include <toml++/toml.h>

#include "base/trusted_file.h"

extern char** environ;

namespace orch {
namespace {

namespace fs = std::filesystem;

using Target = std::variant<std::string*, int64_t*, double*, bool*, std::vector<int64_t>*,
                            std::vector<std::string>*>;

struct KeyDef {
  const char* section = nullptr;
  const char* key = nullptr;
  const char* env = nullptr;  // nullptr: ORCH_<SECTION>_<KEY>
  bool reloadable = false;
  Target (*get)(Config&) = nullptr;
  int64_t min = 0, max = 0;          // integers and list elements
  double dmin = 0, dmax = 0;         // floats
  std::vector<std::string> choices;  // strings with a fixed set of values
  bool is_path = false;
  bool is_listen = false;
};

KeyDef Key(const char* section, const char* key, const char* env, bool reloadable,
           Target (*get)(Config&)) {
  KeyDef d;
  d.section = section;
  d.key = key;
  d.env = env;
  d.reloadable = reloadable;
  d.get = get;
  return d;
}
KeyDef Ranged(KeyDef d, int64_t min, int64_t max) {
  d.min = min;
  d.max = max;
  return d;
}
KeyDef Ranged(KeyDef d, double min, double max) {
  d.dmin = min;
  d.dmax = max;
  return d;
}
KeyDef Choices(KeyDef d, std::vector<std::string> choices) {
  d.choices = std::move(choices);
  return d;
}
KeyDef Path(KeyDef d) {
  d.is_path = true;
  return d;
}
KeyDef Listen(KeyDef d) {
  d.is_listen = true;
  return d;
}

#define ORCH_T(expr) [](Config& c) -> Target { return &c.expr; }

const std::vector<KeyDef>& Defs() {
  static const std::vector<KeyDef> defs = {
      Listen(Key("server", "listen", "ORCH_LISTEN", false, ORCH_T(server.listen))),
      Path(Key("server", "unix_socket", nullptr, false, ORCH_T(server.unix_socket))),
      Key("server", "unix_socket_group", nullptr, false, ORCH_T(server.unix_socket_group)),
      Path(Key("server", "token_file", nullptr, false, ORCH_T(server.token_file))),
      Key("server", "allowed_hosts", nullptr, false, ORCH_T(server.allowed_hosts)),
      Ranged(Key("server", "max_body_bytes", nullptr, false, ORCH_T(server.max_body_bytes)),
             int64_t{1024}, int64_t{1} << 30),
      Ranged(Key("server", "max_connections", nullptr, false, ORCH_T(server.max_connections)),
             int64_t{1}, int64_t{1000000}),
      Ranged(Key("server", "idle_timeout_ms", nullptr, false, ORCH_T(server.idle_timeout_ms)),
             int64_t{100}, int64_t{3600000}),
      Key("server", "ui", nullptr, false, ORCH_T(server.ui)),
      Choices(Key("store", "backend", nullptr, false, ORCH_T(store.backend)),
              {"sqlite", "postgres"}),
      Key("store", "url", "ORCH_STORE_URL", false, ORCH_T(store.url)),
      Path(Key("store", "path", "ORCH_DB_PATH", false, ORCH_T(store.path))),
      Choices(Key("store", "synchronous", nullptr, false, ORCH_T(store.synchronous)),
              {"off", "normal", "full", "extra"}),
      Ranged(Key("store", "busy_timeout_ms", nullptr, false, ORCH_T(store.busy_timeout_ms)),
             int64_t{0}, int64_t{600000}),
      Ranged(Key("store", "max_pending_writes", nullptr, false, ORCH_T(store.max_pending_writes)),
             int64_t{1}, int64_t{1000000}),
      Ranged(Key("supervisor", "max_concurrency", "ORCH_MAX_CONCURRENCY", true,
                 ORCH_T(supervisor.max_concurrency)),
             int64_t{1}, int64_t{100000}),
      Key("supervisor", "serial_gate_enabled", "ORCH_SERIAL_GATE_ENABLED", true,
          ORCH_T(supervisor.serial_gate_enabled)),
      Ranged(Key("supervisor", "kill_grace_s", nullptr, true, ORCH_T(supervisor.kill_grace_s)),
             int64_t{0}, int64_t{3600}),
      Ranged(Key("supervisor", "shutdown_grace_s", nullptr, false,
                 ORCH_T(supervisor.shutdown_grace_s)),
             int64_t{0}, int64_t{3600}),
      Ranged(Key("supervisor", "transient_exit_codes", nullptr, true,
                 ORCH_T(supervisor.transient_exit_codes)),
             int64_t{1}, int64_t{255}),
      Ranged(Key("supervisor", "default_max_attempts", nullptr, true,
                 ORCH_T(supervisor.default_max_attempts)),
             int64_t{1}, int64_t{1000}),
      Ranged(Key("supervisor", "backoff_base_s", nullptr, true, ORCH_T(supervisor.backoff_base_s)),
             0.0, 86400.0),
      Ranged(Key("supervisor", "backoff_max_s", nullptr, true, ORCH_T(supervisor.backoff_max_s)),
             0.0, 604800.0),
      Path(Key("supervisor", "log_dir", nullptr, false, ORCH_T(supervisor.log_dir))),
      Choices(Key("supervisor", "orphan_policy", nullptr, false, ORCH_T(supervisor.orphan_policy)),
              {"requeue", "adopt"}),
      Key("supervisor", "run_as", nullptr, false, ORCH_T(supervisor.run_as)),
      Ranged(Key("supervisor", "max_log_bytes", nullptr, false, ORCH_T(supervisor.max_log_bytes)),
             int64_t{1024}, int64_t{1} << 40),
      Ranged(Key("supervisor", "stall_timeout_s", nullptr, true,
                 ORCH_T(supervisor.stall_timeout_s)),
             int64_t{0}, int64_t{30} * 86400),
      Ranged(Key("reaper", "interval_ms", nullptr, true, ORCH_T(reaper.interval_ms)), int64_t{10},
             int64_t{3600000}),
      Key("reaper", "sanitize_impossible_queued", "ORCH_IMPOSSIBLE_QUEUED_SANITIZE_ENABLED", true,
          ORCH_T(reaper.sanitize_impossible_queued)),
      Ranged(Key("reaper", "spawn_grace_s", nullptr, true, ORCH_T(reaper.spawn_grace_s)),
             int64_t{1}, int64_t{86400}),
      Choices(Key("log", "level", "ORCH_LOG_LEVEL", true, ORCH_T(log.level)),
              {"trace", "debug", "info", "warn", "error", "critical", "off"}),
      Choices(Key("log", "format", "ORCH_LOG_FORMAT", false, ORCH_T(log.format)),
              {"text", "json"}),
      Key("cluster", "node_id", nullptr, false, ORCH_T(cluster.node_id)),
      Ranged(Key("cluster", "lease_s", nullptr, false, ORCH_T(cluster.lease_s)), int64_t{2},
             int64_t{3600}),
      Choices(Key("cgroup", "mode", nullptr, false, ORCH_T(cgroup.mode)),
              {"auto", "off"}),
      Key("cgroup", "root", nullptr, false, ORCH_T(cgroup.root)),
  };
  return defs;
}
#undef ORCH_T

std::string FullName(const KeyDef& d) { return std::string(d.section) + "." + d.key; }

std::string EnvName(const KeyDef& d) {
  if (d.env != nullptr) return d.env;
  std::string s = std::string("ORCH_") + d.section + "_" + d.key;
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::toupper(c); });
  return s;
}

std::string Join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

std::string Expected(const KeyDef& d) {
  Config scratch;
  Target t = d.get(scratch);
  if (std::holds_alternative<bool*>(t)) return "a boolean (true/false/1/0/yes/no/on/off)";
  if (std::holds_alternative<int64_t*>(t)) {
    return "an integer from " + std::to_string(d.min) + " to " + std::to_string(d.max);
  }
  if (std::holds_alternative<double*>(t)) {
    std::ostringstream s;
    s << "a number from " << d.dmin << " to " << d.dmax;
    return s.str();
  }
  if (std::holds_alternative<std::vector<int64_t>*>(t)) {
    return "a list of integers from " + std::to_string(d.min) + " to " + std::to_string(d.max);
  }
  if (std::holds_alternative<std::vector<std::string>*>(t)) return "a list of strings";
  if (!d.choices.empty()) return "one of \"" + Join(d.choices, "\", \"") + "\"";
  if (d.is_listen) return "\"HOST:PORT\" (IPv4, or [IPv6]:PORT), or \"\" to disable TCP";
  return d.is_path ? "a path string" : "a string";
}

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// "did you mean" for an unknown key: the closest known key, if close enough.
std::string Suggest(const std::string& section, const std::string& key) {
  std::string best;
  size_t best_d = std::max<size_t>(3, key.size() / 3) + 1;
  for (const auto& d : Defs()) {
    size_t dist = EditDistance(key, d.key) + (section == d.section ? 0 : 1);
    if (dist < best_d) {
      best_d = dist;
      best = FullName(d);
    }
  }
  return best.empty() ? "" : " (did you mean " + best + "?)";
}

std::string SuggestSection(const std::string& section) {
  for (const char* known : {"server", "store", "supervisor", "reaper", "log", "cluster", "cgroup"}) {
    if (EditDistance(section, known) <= 2) return std::string(" (did you mean ") + known + "?)";
  }
  return "";
}

bool ValidListen(const std::string& s) {
  if (s.empty()) return true;
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon + 1 >= s.size()) return false;
  std::string host = s.substr(0, colon), port = s.substr(colon + 1);
  int p = -1;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc() || ptr != port.data() + port.size() || p < 0 || p > 65535) return false;
  unsigned char buf[16];
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    return inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), buf) == 1;
  }
  return inet_pton(AF_INET, host.c_str(), buf) == 1;
}

}  // namespace

bool IsLoopbackListen(const std::string& listen) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    in6_addr a6{};
    if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a6) != 1) return false;
    if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
  }
  in_addr a4{};
  if (inet_pton(AF_INET, host.c_str(), &a4) != 1) return false;
  return (ntohl(a4.s_addr) >> 24) == 127;
}

namespace {

bool ParseInt(const std::string& s, int64_t* out) {
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size() && !s.empty();
}

// Parses text from the environment or a flag into the key's type. Returns
// an empty string on success, else what was wrong.
std::string AssignText(const KeyDef& d, Config& c, const std::string& text) {
  Target t = d.get(c);
  if (auto* b = std::get_if<bool*>(&t)) {
    return ParseBool(text, *b) ? "" : "got \"" + text + "\"";
  }
  if (auto* i = std::get_if<int64_t*>(&t)) {
    int64_t v;
    if (!ParseInt(text, &v)) return "got \"" + text + "\"";
    if (v < d.min || v > d.max) return "got " + text;
    **i = v;
    return "";
  }
  if (auto* f = std::get_if<double*>(&t)) {
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || errno != 0 || !std::isfinite(v)) {
      return "got \"" + text + "\"";
    }
    if (v < d.dmin || v > d.dmax) return "got " + text;
    **f = v;
    return "";
  }
  if (auto* l = std::get_if<std::vector<int64_t>*>(&t)) {
    std::string body = text;
    if (!body.empty() && body.front() == '[' && body.back() == ']') {
      body = body.substr(1, body.size() - 2);
    }
    std::vector<int64_t> out;
    std::stringstream ss(body);
    std::string item;
    while (std::getline(ss, item, ',')) {
      item.erase(0, item.find_first_not_of(" \t"));
      item.erase(item.find_last_not_of(" \t") + 1);
      if (item.empty()) continue;
      int64_t v;
      if (!ParseInt(item, &v) || v < d.min || v > d.max) return "got \"" + text + "\"";
      out.push_back(v);
    }
    **l = std::move(out);
    return "";
  }
  if (auto* l = std::get_if<std::vector<std::string>*>(&t)) {
    // Comma-separated (environment, --set), optionally in brackets.
    std::string body = text;
    if (!body.empty() && body.front() == '[' && body.back() == ']') {
      body = body.substr(1, body.size() - 2);
    }
    std::vector<std::string> out;
    std::stringstream ss(body);
    std::string item;
    while (std::getline(ss, item, ',')) {
      item.erase(0, item.find_first_not_of(" \t\""));
      item.erase(item.find_last_not_of(" \t\"") + 1);
      if (!item.empty()) out.push_back(item);
    }
    **l = std::move(out);
    return "";
  }
  auto* s = std::get<std::string*>(t);
  if (!d.choices.empty() && std::find(d.choices.begin(), d.choices.end(), text) == d.choices.end()) {
    return "got \"" + text + "\"";
  }
  if (d.is_listen && !ValidListen(text)) return "got \"" + text + "\"";
  *s = text;
  return "";
}

const char* TomlTypeName(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    default: return "a date/time";
  }
}

// Assigns a TOML value; returns "" or what was wrong ("got ...").
std::string AssignToml(const KeyDef& d, Config& c, const toml::node& n) {
  Target t = d.get(c);
  if (auto* b = std::get_if<bool*>(&t)) {
    if (!n.is_boolean()) return std::string("got ") + TomlTypeName(n);
    **b = n.as_boolean()->get();
    return "";
  }
  if (auto* i = std::get_if<int64_t*>(&t)) {
    if (!n.is_integer()) return std::string("got ") + TomlTypeName(n);
    int64_t v = n.as_integer()->get();
    if (v < d.min || v > d.max) return "got " + std::to_string(v);
    **i = v;
    return "";
  }
  if (auto* f = std::get_if<double*>(&t)) {
    double v;
    if (n.is_integer()) {
      v = static_cast<double>(n.as_integer()->get());
    } else if (n.is_floating_point()) {
      v = n.as_floating_point()->get();
    } else {
      return std::string("got ") + TomlTypeName(n);
    }
    if (!std::isfinite(v) || v < d.dmin || v > d.dmax) {
      std::ostringstream s;
      s << "got " << v;
      return s.str();
    }
    **f = v;
    return "";
  }
  if (auto* l = std::get_if<std::vector<int64_t>*>(&t)) {
    if (!n.is_array()) return std::string("got ") + TomlTypeName(n);
    std::vector<int64_t> out;
    for (const auto& e : *n.as_array()) {
      if (!e.is_integer()) return std::string("got an array holding ") + TomlTypeName(e);
      int64_t v = e.as_integer()->get();
      if (v < d.min || v > d.max) return "got an array holding " + std::to_string(v);
      out.push_back(v);
    }
    **l = std::move(out);
    return "";
  }
  if (auto* l = std::get_if<std::vector<std::string>*>(&t)) {
    if (!n.is_array()) return std::string("got ") + TomlTypeName(n);
    std::vector<std::string> out;
    for (const auto& e : *n.as_array()) {
      if (!e.is_string()) return std::string("got an array holding ") + TomlTypeName(e);
      out.push_back(e.as_string()->get());
    }
    **l = std::move(out);
    return "";
  }
  if (!n.is_string()) return std::string("got ") + TomlTypeName(n);
  return AssignText(d, c, n.as_string()->get());
}

std::string Where(const std::string& file, const toml::source_region& r) {
  return file + ":" + std::to_string(r.begin.line) + ":" + std::to_string(r.begin.column);
}

void ApplyFile(const std::string& file, const std::optional<std::string>& given_text,
               LoadedConfig& out) {
  std::string text;
  if (given_text) {
    text = *given_text;
  } else {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      out.errors.push_back(file + ": cannot read config file: " + std::strerror(errno));
      return;
    }
    std::stringstream buf;
    buf << in.rdbuf();
    text = buf.str();
  }
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    out.errors.push_back(Where(file, e.source()) + ": not valid TOML: " +
                         std::string(e.description()));
    return;
  }
  for (const auto& [section_key, section_node] : root) {
    std::string section(section_key.str());
    bool known_section = std::any_of(Defs().begin(), Defs().end(),
                                     [&](const KeyDef& d) { return section == d.section; });
    if (!known_section || !section_node.is_table()) {
      out.errors.push_back(Where(file, section_node.source()) + ": unknown " +
                           (section_node.is_table() ? "section [" + section + "]"
                                                    : "top-level key " + section) +
                           SuggestSection(section) +
                           "; expected one of [server], [store], [supervisor], [reaper], [log]");
      continue;
    }
    for (const auto& [key_key, node] : *section_node.as_table()) {
      std::string key(key_key.str());
      auto it = std::find_if(Defs().begin(), Defs().end(), [&](const KeyDef& d) {
        return section == d.section && key == d.key;
      });
      if (it == Defs().end()) {
        out.errors.push_back(Where(file, node.source()) + ": unknown key " + section + "." + key +
                             Suggest(section, key));
        continue;
      }
      std::string err = AssignToml(*it, out.config, node);
      if (!err.empty()) {
        out.errors.push_back(Where(file, node.source()) + ": " + FullName(*it) + ": expected " +
                             Expected(*it) + ", " + err);
        continue;
      }
      out.sources[FullName(*it)] = ConfigSource::kFile;
    }
  }
}

std::string Absolute(const fs::path& base, const std::string& p) {
  if (p.empty()) return p;
  fs::path path(p);
  if (path.is_relative()) path = base / path;
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  return (ec ? path : abs).lexically_normal().string();
}

}  // namespace

const char* SourceName(ConfigSource source) {
  switch (source) {
    case ConfigSource::kDefault: return "default";
    case ConfigSource::kFile: return "file";
    case ConfigSource::kEnv: return "env";
    case ConfigSource::kFlag: return "flag";
  }
  return "?";
}

bool ParseBool(const std::string& text, bool* out) {
  std::string t = text;
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "true" || t == "1" || t == "yes" || t == "on") {
    *out = true;
  } else if (t == "false" || t == "0" || t == "no" || t == "off") {
    *out = false;
  } else {
    return false;
  }
  return true;
}

const std::vector<ConfigKeyInfo>& ConfigKeys() {
  static const std::vector<ConfigKeyInfo> keys = [] {
    std::vector<ConfigKeyInfo> v;
    for (const auto& d : Defs()) v.push_back({FullName(d), EnvName(d), Expected(d), d.reloadable});
    return v;
  }();
  return keys;
}

std::map<std::string, std::string> ProcessEnvironment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq != nullptr) env.emplace(std::string(*e, static_cast<size_t>(eq - *e)), std::string(eq + 1));
  }
  return env;
}

LoadedConfig LoadConfig(const ConfigInputs& inputs) {
  LoadedConfig out;
  for (const auto& d : Defs()) out.sources[FullName(d)] = ConfigSource::kDefault;

  std::string file = inputs.file;
  std::optional<std::string> text = inputs.file_text;
  if (file.empty() && !inputs.file_required) {
    // Found, not named: used only when nobody but this user or root can have
    // written it (a config planted in /tmp must not configure a root daemon).
    auto found = ReadFileForUser("orchestrator.toml", geteuid(), Symlinks::kRefuse);
    if (found.ok() && found->distrust.empty()) {
      file = "orchestrator.toml";
      text = std::move(found->text);
    } else if (found.ok() || found.status().code() != Code::kNotFound) {
      out.errors.push_back(
          "./orchestrator.toml: " + (found.ok() ? found->distrust : found.status().message()) +
          "; refusing to use it (pass --config to use it anyway)");
    }
  }
  if (!file.empty()) {
    out.file = file;
    ApplyFile(file, text, out);
  }

  for (const auto& d : Defs()) {
    auto it = inputs.env.find(EnvName(d));
    if (it == inputs.env.end()) continue;
    std::string err = AssignText(d, out.config, it->second);
    if (!err.empty()) {
      out.errors.push_back("environment " + it->first + ": " + FullName(d) + ": expected " +
                           Expected(d) + ", " + err);
      continue;
    }
    out.sources[FullName(d)] = ConfigSource::kEnv;
  }

  for (const auto& flag : inputs.flags) {
    const std::string& key = flag.first;
    const std::string& value = flag.second;
    auto it = std::find_if(Defs().begin(), Defs().end(),
                           [&](const KeyDef& d) { return FullName(d) == key; });
    if (it == Defs().end()) {
      size_t dot = key.find('.');
      std::string section = dot == std::string::npos ? "" : key.substr(0, dot);
      out.errors.push_back("flag --set " + key + ": unknown key" +
                           Suggest(section, key.substr(dot == std::string::npos ? 0 : dot + 1)));
      continue;
    }
    std::string err = AssignText(*it, out.config, value);
    if (!err.empty()) {
      out.errors.push_back("flag --set " + key + "=" + value + ": expected " + Expected(*it) +
                           ", " + err);
      continue;
    }
    out.sources[key] = ConfigSource::kFlag;
  }

  Config& c = out.config;
  if (c.supervisor.backoff_base_s > c.supervisor.backoff_max_s) {
    out.errors.push_back("supervisor.backoff_base_s (" + ConfigValueText(c, "supervisor.backoff_base_s") +
                         ") must not exceed supervisor.backoff_max_s (" +
                         ConfigValueText(c, "supervisor.backoff_max_s") + ")");
  }
  if (c.store.backend == "postgres" && c.store.url.empty()) {
    out.errors.push_back("store.backend = \"postgres\" needs store.url (a libpq URL such as "
                         "postgresql://orchestrator@db.example/orchestrator, or ORCH_STORE_URL)");
  }
  if (!c.cgroup.root.empty() && c.cgroup.root[0] != '/') {
    out.errors.push_back("cgroup.root = \"" + c.cgroup.root +
                         "\": expected an absolute path on the cgroup2 filesystem (or \"\" for "
                         "the daemon's own cgroup + /runs)");
  }
  if (c.store.backend == "sqlite" && !c.store.url.empty()) {
    out.errors.push_back("store.url is set but store.backend = \"sqlite\": set "
                         "store.backend = \"postgres\" to use it, or remove store.url");
  }
  if (c.server.listen.empty() && c.server.unix_socket.empty()) {
    out.errors.push_back(
        "server.listen and server.unix_socket are both empty: the API would be unreachable");
  }
  if (c.server.token_file.empty() && !c.server.listen.empty() &&
      !IsLoopbackListen(c.server.listen)) {
    out.errors.push_back("server.token_file is \"\" (no authentication) but server.listen = \"" +
                         c.server.listen +
                         "\" is not a loopback address: anyone who can reach it could run "
                         "commands as the daemon's user; set server.token_file");
  }

  fs::path file_dir;
  if (!out.file.empty()) file_dir = fs::path(out.file).parent_path();
  std::error_code ec;
  fs::path cwd = fs::current_path(ec);
  for (const auto& d : Defs()) {
    if (!d.is_path) continue;
    ConfigSource src = out.sources[FullName(d)];
    bool from_file_side = src == ConfigSource::kDefault || src == ConfigSource::kFile;
    auto* s = std::get<std::string*>(d.get(c));
    *s = Absolute(from_file_side ? file_dir : cwd, *s);
  }
  return out;
}

std::string RedactStoreUrl(const std::string& url) {
  std::string out = url;
  // postgresql://user:secret@host/db
  auto scheme = out.find("://");
  if (scheme != std::string::npos) {
    size_t start = scheme + 3;
    size_t end = out.find_first_of("/?", start);
    if (end == std::string::npos) end = out.size();
    size_t at = out.rfind('@', end);
    if (at != std::string::npos && at > start) {
      size_t colon = out.find(':', start);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // password=secret as a URL parameter, or in key = value form, quoted or not
  static const std::regex kPassword(R"(password\s*=\s*('([^'\\]|\\.)*'?|[^&\s]*))",
                                    std::regex::icase);
  return std::regex_replace(out, kPassword, "password=***");
}

std::string StoreLocation(const Config::Store& store) {
  return store.backend == "postgres" ? RedactStoreUrl(store.url) : store.path;
}

std::string ResolveNodeId(const std::string& configured) {
  if (!configured.empty()) return configured;
  std::ifstream in("/etc/machine-id");
  std::string id;
  if (in >> id && !id.empty()) return id;
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) == 0 && host[0] != '\0') return host;
  return "localhost";
}

std::string ConfigValueText(const Config& config, const std::string& key) {
  auto it = std::find_if(Defs().begin(), Defs().end(),
                         [&](const KeyDef& d) { return FullName(d) == key; });
  if (it == Defs().end()) return "";
  Target t = it->get(const_cast<Config&>(config));
  std::ostringstream s;
  if (auto* b = std::get_if<bool*>(&t)) {
    s << (**b ? "true" : "false");
  } else if (auto* i = std::get_if<int64_t*>(&t)) {
    s << **i;
  } else if (auto* f = std::get_if<double*>(&t)) {
    s << **f;
    if (std::floor(**f) == **f && std::fabs(**f) < 1e15) s << ".0";
  } else if (auto* l = std::get_if<std::vector<int64_t>*>(&t)) {
    s << '[';
    for (size_t k = 0; k < (*l)->size(); ++k) s << (k ? ", " : "") << (**l)[k];
    s << ']';
  } else if (auto* ls = std::get_if<std::vector<std::string>*>(&t)) {
    s << '[';
    for (size_t k = 0; k < (*ls)->size(); ++k) s << (k ? ", " : "") << '"' << (**ls)[k] << '"';
    s << ']';
  } else if (key == "store.url") {
    s << '"' << RedactStoreUrl(*std::get<std::string*>(t)) << '"';
  } else {
    s << '"' << *std::get<std::string*>(t) << '"';
  }
  return s.str();
}

Config ApplyReloadable(const Config& running, const Config& next) {
  Config out = running;
  Config source = next;
  for (const auto& d : Defs()) {
    if (!d.reloadable) continue;
    std::visit([&](auto* to) { *to = *std::get<std::remove_reference_t<decltype(to)>>(d.get(source)); },
               d.get(out));
  }
  return out;
}

std::string DescribeConfig(const LoadedConfig& loaded) {
  std::ostringstream out;
  out << "# effective configuration"
      << (loaded.file.empty() ? " (no config file)" : " from " + loaded.file) << "\n";
  std::string section;
  for (const auto& d : Defs()) {
    if (section != d.section) {
      section = d.section;
      out << "\n[" << section << "]\n";
    }
    std::string line = std::string(d.key) + " = " + ConfigValueText(loaded.config, FullName(d));
    auto src = loaded.sources.find(FullName(d));
    out << line << std::string(line.size() < 44 ? 44 - line.size() : 1, ' ') << "# "
        << SourceName(src == loaded.sources.end() ? ConfigSource::kDefault : src->second);
    if (src != loaded.sources.end() && src->second == ConfigSource::kEnv) out << " " << EnvName(d);
    out << "\n";
  }
  return out.str();
}

}  // namespace orch
