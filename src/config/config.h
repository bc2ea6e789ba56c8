// The daemon's configuration (SPEC §8): built-in defaults < orchestrator.toml
// < environment (ORCH_*) < command-line flags. Every key is described once in
// the key table of config.cc; everything here is derived from it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace orch {

struct Config {
  struct Server {
    std::string listen = "127.0.0.1:8080";
    std::string unix_socket;
    std::string unix_socket_group;  // "" = the daemon's group
    std::string token_file = "var/token";  // "" = no authentication (loopback/unix only)
    std::vector<std::string> allowed_hosts;  // Host values accepted besides loopback
    int64_t max_body_bytes = 1048576;
    int64_t max_connections = 1024;
    int64_t idle_timeout_ms = 30000;
    bool ui = true;  // the status page at GET / (SPEC §13)
  } server;
  struct Store {
    std::string backend = "sqlite";  // or "postgres" (SPEC §11)
    std::string url;                 // libpq URL, for postgres
    std::string path = "var/orchestrator.db";
    std::string synchronous = "normal";
    int64_t busy_timeout_ms = 5000;
    // Client writes that may wait for the store at once; beyond, 503.
    int64_t max_pending_writes = 1000;
  } store;
  struct Supervisor {
    int64_t max_concurrency = 1;
    bool serial_gate_enabled = true;
    int64_t kill_grace_s = 10;
    int64_t shutdown_grace_s = 20;
    std::vector<int64_t> transient_exit_codes = {75};
    int64_t default_max_attempts = 3;
    double backoff_base_s = 1.0;
    double backoff_max_s = 300.0;
    std::string log_dir = "var/logs";
    std::string orphan_policy = "requeue";
    std::string run_as;
    int64_t max_log_bytes = 10485760;
    int64_t stall_timeout_s = 0;  // default for jobs; 0 = no stall detection
  } supervisor;
  struct Reaper {
    int64_t interval_ms = 1000;
    bool sanitize_impossible_queued = true;
    int64_t spawn_grace_s = 30;
  } reaper;
  struct Log {
    std::string level = "info";
    std::string format = "text";
  } log;
  struct Cluster {
    std::string node_id;  // "" = /etc/machine-id, else the hostname
    int64_t lease_s = 10;
  } cluster;
  struct Cgroup {
    std::string mode = "auto";  // "off" = process groups only (SPEC §12)
    std::string root;           // "" = the daemon's own cgroup + /runs
  } cgroup;
};

// True for a server.listen value on a loopback address (127.0.0.0/8, ::1).
bool IsLoopbackListen(const std::string& listen);

enum class ConfigSource { kDefault, kFile, kEnv, kFlag };
const char* SourceName(ConfigSource source);

// What one key is: for check-config, docs and the loader.
struct ConfigKeyInfo {
  std::string name;        // "supervisor.max_concurrency"
  std::string env;         // "ORCH_MAX_CONCURRENCY"
  std::string expected;    // "an integer from 1 to 100000"
  bool reloadable;         // applied on SIGHUP
};
const std::vector<ConfigKeyInfo>& ConfigKeys();

struct LoadedConfig {
  Config config;
  std::string file;                                  // "" when no file was read
  std::map<std::string, ConfigSource> sources;       // key -> where its value came from
  std::vector<std::string> errors;                   // empty when the config is usable
  bool ok() const { return errors.empty(); }
};

struct ConfigInputs {
  std::string file;  // path given with --config; "" = ./orchestrator.toml when present
  bool file_required = false;  // true: read `file` only (none when "")
  // The file's content when the caller has read (and judged) it already, as
  // the client does (cli/client_commands.cc); `file` then only names it in
  // messages and anchors its relative paths.
  std::optional<std::string> file_text;
  std::map<std::string, std::string> env;       // normally the process environment
  std::vector<std::pair<std::string, std::string>> flags;  // key -> value, from --set etc.
};

// Never throws: every problem (unreadable file, parse error, unknown key,
// wrong type, out of range, bad env value) is one line in `errors` naming the
// key, where it came from (file:line:column, variable or flag) and what was
// expected. Relative paths from the file or defaults resolve against the
// config file's directory; from env and flags against the working directory.
LoadedConfig LoadConfig(const ConfigInputs& inputs);

// The process environment as a map (for ConfigInputs::env).
std::map<std::string, std::string> ProcessEnvironment();

// The effective configuration with one "key = value  # source" line per key.
std::string DescribeConfig(const LoadedConfig& loaded);

// The value of one key as TOML text (for DescribeConfig and reload diffs).
std::string ConfigValueText(const Config& config, const std::string& key);

// `running` with the values of the SIGHUP-reloadable keys taken from `next`.
Config ApplyReloadable(const Config& running, const Config& next);

// store.url with any password replaced by "***" (for logs and check-config).
std::string RedactStoreUrl(const std::string& url);
// Where the store is, for messages: the SQLite file, or the URL without its
// password.
std::string StoreLocation(const Config::Store& store);
// This node's name in a shared queue (SPEC §11): cluster.node_id when set,
// else /etc/machine-id, else the hostname.
std::string ResolveNodeId(const std::string& configured);

// Parses the boolean spellings accepted everywhere: true/false/1/0/yes/no/on/off.
bool ParseBool(const std::string& text, bool* out);

}  // namespace orch
