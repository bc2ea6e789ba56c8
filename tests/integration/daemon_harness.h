// Starts the real `orchestrator serve` with a temporary config on port 0 and
// talks to it over loopback HTTP (libcurl). Every test that uses it stops or
// kills what it started.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/test_util.h"

namespace orch::test {

struct HttpResult {
  long status = 0;  // 0 when the request failed
  std::string body;
  std::string headers;
  nlohmann::json Json() const { return nlohmann::json::parse(body, nullptr, false); }
  // The first response header called `name` (any case), "" when absent.
  std::string Header(std::string name) const;
};

HttpResult HttpCall(const std::string& method, const std::string& url,
                    const std::string& body = "",
                    const std::vector<std::string>& headers = {});

class Daemon {
 public:
  // `extra_toml` ("[section]" and "key = value" lines) is merged over a
  // config that listens on 127.0.0.1:0, keeps the store in `dir` and ticks
  // the reaper every 100 ms.
  explicit Daemon(const TempDir& dir, std::string extra_toml = "",
                  std::vector<std::string> env = {});
  ~Daemon();  // stops the daemon (and so its jobs) if still running

  // Starts and waits until it listens and /readyz says 200. `wrapper` runs
  // before the binary (e.g. {"unshare","--pid","--fork","--mount-proc"}).
  bool Start(const std::vector<std::string>& wrapper = {});
  // SIGTERM (or `sig`) and waits; returns the exit status (128+sig if killed), -1 on timeout.
  int Stop(int sig = 15, std::chrono::seconds timeout = std::chrono::seconds(30));
  void Kill9();  // SIGKILL, waited for
  // Waits for the daemon to exit by itself; its status, or -1 on timeout.
  int WaitExit(std::chrono::seconds timeout);
  // Replaces the extra environment for the next Start().
  void SetEnv(std::vector<std::string> env);
  // Runs another binary (e.g. one unpacked from the .deb) on another config.
  void UseBinary(std::string binary, std::string config_path) {
    binary_ = std::move(binary);
    config_path_ = std::move(config_path);
  }
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // The daemon itself (inside a wrapper such as unshare, the wrapper's child).
  pid_t DaemonPid() const;

  std::string url() const { return "http://" + address_; }
  // With the token the daemon created at var/token (when there is one).
  HttpResult Get(const std::string& path) const { return HttpCall("GET", url() + path, "", Auth()); }
  HttpResult Post(const std::string& path, const std::string& body = "") const {
    auto headers = Auth();
    headers.push_back("Content-Type: application/json");
    return HttpCall("POST", url() + path, body, headers);
  }
  // The token in var/token, or the file UseTokenFile() named ("" when none).
  std::string Token() const;
  void UseTokenFile(std::string path) { token_file_ = std::move(path); }
  // {"Authorization: Bearer <token>"} or {} without a token.
  std::vector<std::string> Auth() const;
  // POST /jobs; returns the job id or -1.
  int64_t Submit(const nlohmann::json& spec) const;
  nlohmann::json Job(int64_t id) const { return Get("/jobs/" + std::to_string(id)).Json(); }
  // Waits until the job's status is `status` ("running": with its pid recorded).
  bool WaitStatus(int64_t id, const std::string& status,
                  std::chrono::milliseconds timeout = std::chrono::seconds(20)) const;

  std::string Log() const { return ReadFile(log_path_); }
  const std::string& config_path() const { return config_path_; }
  const std::string& address() const { return address_; }
  std::string db_path() const { return dir_.File("q.db"); }
  const std::string& cgroup_root() const { return cgroup_root_; }

 private:
  const TempDir& dir_;
  std::string cgroup_root_;  // this daemon's cgroup.root ("" without cgroup v2)
  std::string binary_ = OrchestratorBinary();
  std::string config_path_, log_path_;
  std::string token_file_;  // "" = <dir>/var/token
  std::vector<std::string> env_;
  pid_t pid_ = -1;
  bool wrapped_ = false;
  std::string address_;
};

// A raw TCP connection to "IP:PORT" with a 5 s receive timeout (for
// hostile-client tests); -1 when it cannot connect.
int ConnectTcp(const std::string& address);
// Reads until the peer closes or the receive timeout passes; on a timeout
// "TIMEOUT" is appended to what was read.
std::string ReadUntilClosed(int fd);

// Host pid of a process in a child PID namespace whose innermost pid is
// `ns_pid` and whose command line contains `marker`; -1 when none.
pid_t FindInNamespace(pid_t ns_pid, const std::string& marker);

// Whether `pid` has children (zombies included), from /proc.
bool HasChildren(pid_t pid);

// Number of lines in a file ("" when missing: 0).
size_t CountLines(const std::string& path);

// Runs sqlite3 on the file and returns its output (for raw checks).
std::string Sql(const std::string& db, const std::string& sql);

}  // namespace orch::test
