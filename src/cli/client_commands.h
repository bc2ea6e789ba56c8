// The client subcommands of SPEC §9 (submit, status, jobs, show, cancel,
// retry, logs, pause, resume): find the server, send one API request (or a
// few, for logs --follow), print a table for people or the JSON for scripts.
#pragma once

#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "base/status.h"
#include "cli/api_client.h"

namespace CLI {
class App;
}

namespace orch::cli {

// Exit statuses shared by every client subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitRefused = 1;      // the server answered with an error
inline constexpr int kExitUsage = 2;        // bad arguments or configuration
inline constexpr int kExitUnreachable = 3;  // no answer from the server

// Options every client subcommand accepts.
struct ClientOptions {
  std::string server;       // --server URL
  std::string token_file;   // --token-file FILE
  std::string config_file;  // --config FILE
  bool json = false;        // --json
  bool verbose = false;     // --verbose: say where config, server and token came from
};

struct Endpoint {
  ServerAddress address;
  std::string token;  // "" = send no Authorization header
};

// Where the parts of an Endpoint came from, in words for people (--verbose),
// and what they should be warned about. Never holds the token itself.
struct EndpointTrail {
  std::string config;  // "./orchestrator.toml", "none (no ./orchestrator.toml here)", ...
  std::string server;  // "http://127.0.0.1:8080 from server.listen in /etc/o.toml"
  std::string token;   // "from --token-file /root/token", "none", ...
  std::vector<std::string> warnings;  // shown with or without --verbose
};

// Where to send requests: --server, else ORCH_URL, else the config's listen
// (or unix_socket). The token comes from --token-file, else ORCH_TOKEN_FILE
// (both must be readable), else the config's token_file when readable. The
// config is read only when needed: --config FILE is the user's choice and is
// used even when others may write it (with a warning); ./orchestrator.toml is
// used only when it is a regular file, not a symlink, owned by the user or
// root and writable by no one else. Anyone else's is ignored as if absent
// (with a warning), so it can neither name the server nor make the client
// read and send a token. A token_file that is only the built-in default is
// read under the same rule. kInvalidArgument with a printable message on bad
// input; `trail`, when given, is filled as far as resolution got.
Result<Endpoint> ResolveEndpoint(const ClientOptions& options,
                                 const std::map<std::string, std::string>& env,
                                 EndpointTrail* trail = nullptr);

// Registers the client subcommands on `app`; holds the parsed values, so it
// must outlive app.parse().
class ClientCommands {
 public:
  explicit ClientCommands(CLI::App* app);
  ClientCommands(const ClientCommands&) = delete;
  ClientCommands& operator=(const ClientCommands&) = delete;

  // After app.parse(): runs the client subcommand that was parsed and returns
  // its exit status (kExit*); nullopt when none was.
  std::optional<int> RunParsed(std::ostream& out, std::ostream& err);

 private:
  int Submit(ApiClient& api, std::ostream& out, std::ostream& err);
  int Status(ApiClient& api, std::ostream& out, std::ostream& err);
  int Jobs(ApiClient& api, std::ostream& out, std::ostream& err);
  int Show(ApiClient& api, std::ostream& out, std::ostream& err);
  int Cancel(ApiClient& api, std::ostream& out, std::ostream& err);
  int Retry(ApiClient& api, std::ostream& out, std::ostream& err);
  int Logs(ApiClient& api, std::ostream& out, std::ostream& err);
  int Pause(ApiClient& api, bool pause, std::ostream& out, std::ostream& err);
  int Reexec(ApiClient& api, std::ostream& out, std::ostream& err);

  ClientOptions options_;
  CLI::App* submit_ = nullptr;
  CLI::App* status_ = nullptr;
  CLI::App* jobs_ = nullptr;
  CLI::App* show_ = nullptr;
  CLI::App* cancel_ = nullptr;
  CLI::App* retry_ = nullptr;
  CLI::App* logs_ = nullptr;
  CLI::App* pause_ = nullptr;
  CLI::App* resume_ = nullptr;
  CLI::App* reexec_ = nullptr;
  int64_t reexec_wait_s_ = 90;

  struct SubmitArgs {
    std::vector<std::string> argv;
    std::string name, serial_key, idempotency_key, cwd;
    std::vector<std::string> env;
    int64_t priority = 0, timeout_s = 0, max_attempts = 0;
    int64_t memory_max = 0, pids_max = 0, stall_timeout_s = 0;
    double cpu_max = 0;
  } submit_args_;
  struct JobsArgs {
    std::string status;
    int64_t limit = 0, after = 0;
  } jobs_args_;
  int64_t job_id_ = 0;  // show, cancel, retry, logs
  struct LogsArgs {
    std::string stream = "stdout";
    int64_t tail = 0;
    bool follow = false;
  } logs_args_;
};

}  // namespace orch::cli
