// The job and run records of SPEC §3. What may happen to a job's status is
// decided in store/job_state_machine.h.
// Times are milliseconds since the Unix epoch (UTC); the API formats them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/process_identity.h"

namespace orch {

enum class JobStatus { kQueued, kRunning, kSucceeded, kFailed, kCancelled };
const char* JobStatusName(JobStatus s);
bool ParseJobStatus(const std::string& text, JobStatus* out);
bool IsTerminal(JobStatus s);

enum class RunOutcome {
  kSucceeded,
  kFailed,
  kTransient,
  kTimeout,
  kCancelled,
  kLost,
  kInterrupted,
  kSpawnFailed,
  kStalled,  // no progress for stall_timeout_s (SPEC §12); retried like a timeout
};
const char* RunOutcomeName(RunOutcome o);
bool ParseRunOutcome(const std::string& text, RunOutcome* out);

// What a client asks for (POST /jobs). Validated by the caller.
struct JobSpec {
  std::string name;
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::string cwd;
  int64_t priority = 0;
  std::optional<std::string> serial_key;
  std::optional<int64_t> timeout_s;
  int64_t max_attempts = 3;
  std::optional<std::string> idempotency_key;
  int64_t not_before = 0;  // ms; 0 = now
  // Applied to the run's cgroup (SPEC §12); refused where the mode cannot.
  std::optional<int64_t> memory_max;  // bytes
  std::optional<double> cpu_max;      // cores
  std::optional<int64_t> pids_max;
  std::optional<int64_t> stall_timeout_s;  // nullopt = supervisor.stall_timeout_s; 0 = off
};

struct Job {
  int64_t id = 0;
  std::string name;
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::string cwd;
  JobStatus status = JobStatus::kQueued;
  int64_t priority = 0;
  std::optional<std::string> serial_key;
  int64_t attempts = 0;
  int64_t max_attempts = 3;
  std::optional<int64_t> timeout_s;
  int64_t not_before = 0;
  std::optional<std::string> idempotency_key;
  int64_t created_at = 0;
  int64_t updated_at = 0;
  std::optional<int64_t> started_at;
  std::optional<int64_t> finished_at;
  std::optional<int64_t> run_id;
  std::optional<int64_t> pid;
  std::optional<int64_t> exit_code;
  std::optional<int64_t> signal;
  std::optional<std::string> outcome;
  std::optional<std::string> error;
  bool cancel_requested = false;
  std::optional<int64_t> memory_max;
  std::optional<double> cpu_max;
  std::optional<int64_t> pids_max;
  std::optional<int64_t> stall_timeout_s;
};

// argv and env as the stores keep them (JSON text). Reading is lenient: a
// value that is not the expected shape reads as empty.
std::string ArgvToJson(const std::vector<std::string>& argv);
std::string EnvToJson(const std::map<std::string, std::string>& env);
std::vector<std::string> ArgvFromJson(const std::string& text);
std::map<std::string, std::string> EnvFromJson(const std::string& text);

struct Run {
  int64_t id = 0;
  int64_t job_id = 0;
  int64_t attempt = 0;
  std::string incarnation;
  std::string node_id;  // the node that claimed it ("" where the store has none)
  // identity.pid == 0 until the process is spawned and stamped.
  ProcessIdentity identity;
  int64_t started_at = 0;
  std::optional<int64_t> ended_at;
  std::optional<std::string> outcome;
  std::optional<std::string> reason;
  std::optional<int64_t> exit_code;
  std::optional<int64_t> signal;
  std::string log_path;  // stdout log; stderr is log_path with ".err" for ".out"
  std::string cgroup;    // its cgroup's path; "" = a process group (SPEC §12)
  // Measured by its cgroup at the end, where the kernel gives them.
  std::optional<int64_t> cpu_usec;
  std::optional<int64_t> mem_peak_bytes;
  std::optional<int64_t> oom_kills;
};

}  // namespace orch
