// The durable queue (SPEC §3, §4). An interface so that a second backend
// (PostgreSQL) can be added without touching the supervisor or the API.
//
// Every status change is decided by the job state machine
// (job_state_machine.h), which every backend calls, and persisted as one
// guarded UPDATE (expected status, and run_id for a running job). A guard
// that misses returns Code::kGuardMissed — never an exception, never a
// silent success; a transition outside the table is kInternal. Storage
// failures come back as kBusy, kFull, kReadOnly, kCorrupt or kIo carrying
// the backend's message; a failed call leaves nothing half-written. Not
// thread-safe: one thread per connection (the daemon's StoreExecutor runs
// them off the loop, store_executor.h); other processes may share the store.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "config/config.h"
#include "store/job.h"
#include "store/job_state_machine.h"

namespace orch {

struct SubmitResult {
  Job job;
  bool created = true;  // false: an existing job with the same idempotency_key
};

struct ClaimRequest {
  int64_t max_concurrency = 1;
  bool serial_gate_enabled = true;
  std::string incarnation;
  // The claiming node: max_concurrency counts its open runs only (PostgreSQL;
  // SQLite has one node).
  std::string node_id;
  int64_t now_ms = 0;
};

struct Claimed {
  Job job;  // already `running`, attempts incremented, run_id set
  Run run;  // open, identity empty (intent first: spawn comes after)
};

// How a run ended, as the supervisor saw it. The job's next status comes
// from TransitionOnRunEnd (job_state_machine.h, SPEC §4).
struct RunEnd {
  int64_t job_id = 0;
  int64_t run_id = 0;
  RunOutcome outcome = RunOutcome::kFailed;
  std::string reason;  // "exit 3", "signal 9", "pid_gone", "never_spawned", ...
  std::optional<int64_t> exit_code;
  std::optional<int64_t> signal;
  std::string error;  // human text for jobs.error ("" = none)
  int64_t now_ms = 0;
  // For requeueing outcomes; for interrupted only when later than now_ms.
  int64_t retry_not_before = 0;
  // What the run's cgroup measured (SPEC §12); unset where not measured.
  std::optional<int64_t> cpu_usec;
  std::optional<int64_t> mem_peak_bytes;
  std::optional<int64_t> oom_kills;
};

struct FinishResult {
  JobStatus job_status;  // the job's status after the transition
};

struct CancelResult {
  CancelEffect effect;
  Job job;  // after the call
};

// Which jobs a ListJobs page holds. Every filter is exact but the name's,
// which matches anywhere in the name (case-sensitive).
struct JobQuery {
  std::optional<JobStatus> status = {};
  std::string name_contains = {};  // "" = any name
  std::optional<std::string> serial_key = {};
  bool newest_first = false;
  // Oldest first: ids above it. Newest first: ids below it (0 = no bound).
  int64_t cursor = 0;
  // The value bound to the query's id bound.
  int64_t IdBound() const {
    return newest_first && cursor == 0 ? std::numeric_limits<int64_t>::max() : cursor;
  }
};

struct JobPage {
  std::vector<Job> jobs;
  std::optional<int64_t> next_cursor;  // the last id when more may follow
};

struct QueueCounts {
  int64_t queued = 0, running = 0, succeeded = 0, failed = 0, cancelled = 0;
  std::optional<int64_t> oldest_queued_created_at;
};

struct RunningEntry {
  Job job;
  Run run;
};

// One minute of the throughput chart (GET /stats): runs claimed in it, runs
// ended in it (and how many of those succeeded), and how long first
// attempts had waited from submit to claim.
struct MinuteStats {
  int64_t minute = 0;  // ms since the epoch, a multiple of 60000
  int64_t started = 0;
  int64_t finished = 0;
  int64_t succeeded = 0;
  std::optional<double> wait_ms_avg;
  std::optional<int64_t> wait_ms_max;
};

// What /queue and blocked_by show of a running job: no argv or env.
struct RunningBrief {
  int64_t job_id = 0;
  int64_t run_id = 0;
  std::string node_id;
  int64_t pid = 0;  // 0 until the process is stamped
  std::optional<std::string> serial_key;
  int64_t started_at = 0;
  bool cancel_requested = false;  // possibly through another node
};

// A queued job found by the I1 sweep.
struct ImpossibleQueued {
  int64_t job_id = 0;
  std::optional<Run> open_run;
};

struct Violation {
  std::string invariant;  // "I1".."I6"
  int64_t job_id = 0;
  std::string detail;
};

// What CheckInvariants needs to judge I5 and I6, which depend on the config.
struct InvariantLimits {
  int64_t max_concurrency = 0;     // 0: do not check I5
  bool serial_gate_enabled = true;  // false: do not check I6
};

// A node's row in `nodes` (SPEC §11). Times are the store's clock, in ms:
// the database's on PostgreSQL, never compared with a host's own clock.
struct NodeInfo {
  std::string node_id;
  std::string incarnation;
  int64_t started_at = 0;
  int64_t heartbeat_at = 0;
  int64_t lease_until = 0;
  std::string version;
  int64_t db_now = 0;   // the store's clock when this was read
  int64_t running = 0;  // its open runs
  bool alive() const { return lease_until >= db_now; }
};

struct NodeClaim {
  std::string node_id;
  std::string incarnation;
  int64_t lease_ms = 10000;
  std::string version;
  // The incarnation this one follows by re-exec (SPEC §14): its live lease
  // is taken over, not waited out. "" = none.
  std::string takes_over = "";
};

struct LeaseRenewal {
  int64_t lease_until = 0;  // store clock
  int64_t db_now = 0;
  // The lease had run out before this renewal: other nodes may have
  // rescued this node's runs meanwhile.
  bool lapsed = false;
};

// A run of a dead node that a live one closed (lost, node_lost).
struct RescuedRun {
  int64_t job_id = 0;
  int64_t run_id = 0;
  std::string node_id;
  JobStatus job_status = JobStatus::kQueued;  // after the rescue
};

struct RescueRequest {
  std::string self;  // never rescues its own runs
  int64_t now_ms = 0;
  int64_t limit = 100;
  // The requeued job's not_before for the attempt that was lost.
  std::function<int64_t(int64_t attempt)> retry_not_before;
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  // Inserts a queued job; with an idempotency_key already present, returns
  // that job with created=false and changes nothing.
  virtual Result<SubmitResult> Submit(const JobSpec& spec, int64_t now_ms) = 0;

  // One IMMEDIATE transaction: the best claimable job (status queued,
  // not_before <= now, priority desc, id asc; with the gate on, keys that
  // already run are skipped without blocking other keys) if fewer than
  // max_concurrency jobs run. Opens its run row and flips it to running.
  // Returns nullopt when nothing is claimable. SQLite does not read the
  // pause flag (the caller does); on PostgreSQL, where another node may have
  // paused the queue, a paused queue claims nothing, and neither does a node
  // whose row in `nodes` is another incarnation's or out of lease. A stale open run left on the chosen job is closed as
  // lost first, so a leftover row can never wedge the queue.
  virtual Result<std::optional<Claimed>> ClaimNext(const ClaimRequest& req) = 0;

  // Stamps pid, identity, log path and cgroup ("" = none) on an open run
  // and the job's pid. kGuardMissed when the run is closed or no longer the
  // job's current run.
  virtual Status RecordSpawned(int64_t job_id, int64_t run_id, const ProcessIdentity& id,
                               const std::string& log_path, const std::string& cgroup = "") = 0;

  // Closes the run and moves the job in one transaction (see RunEnd).
  virtual Result<FinishResult> FinishRun(const RunEnd& end) = 0;

  // queued → cancelled now (kCancelled); running → marks cancel_requested
  // and returns kRunningSignalNeeded (the supervisor terminates it). kConflict
  // for terminal jobs, kNotFound for unknown ids.
  virtual Result<CancelResult> Cancel(int64_t job_id, int64_t now_ms) = 0;

  // failed|cancelled → queued with attempts reset. kConflict otherwise.
  virtual Result<Job> Retry(int64_t job_id, int64_t now_ms) = 0;

  virtual Status SetPaused(bool paused) = 0;
  virtual Result<bool> IsPaused() = 0;

  // The I1 sweep: queued jobs that carry run_id, pid or started_at, or that
  // have an open run row, by id, each with its open run if it has one.
  // Nothing is repaired here: the open run's process must be checked first
  // (SanitizeImpossibleQueued below).
  virtual Result<std::vector<ImpossibleQueued>> FindImpossibleQueued() = 0;
  // One transaction: closes `open_run_id` (when set) with outcome/reason and
  // clears the job's ownership. kGuardMissed when the job is no longer
  // queued or the run no longer open.
  virtual Status RepairImpossibleQueued(int64_t job_id, std::optional<int64_t> open_run_id,
                                        RunOutcome outcome, const std::string& reason,
                                        int64_t now_ms) = 0;
  // The open run of a queued job still has a live process: the job becomes
  // running with that run again (attempts = the run's), so that the process
  // is tracked and never forgotten. May exceed max_concurrency: the process
  // runs whether counted or not. kGuardMissed as above.
  virtual Status ReattachOpenRun(int64_t job_id, int64_t run_id, int64_t now_ms) = 0;

  // Every running job with its current run (recovery).
  virtual Result<std::vector<RunningEntry>> ListRunning() = 0;
  // The same rows, only the columns /queue, blocked_by and the reaper's
  // liveness pass need (cheap with many running jobs), by job id.
  virtual Result<std::vector<RunningBrief>> ListRunningBrief() = 0;

  // The jobs `q` selects, by id in its order: at most `limit`, and no more
  // once their argv, env, name and cwd pass `max_bytes` (at least one).
  // next_cursor is set when the page stopped at either bound.
  virtual Result<JobPage> ListJobs(const JobQuery& q, int64_t limit, int64_t max_bytes) = 0;
  Result<JobPage> ListJobs(std::optional<JobStatus> status, int64_t after_id, int64_t limit,
                           int64_t max_bytes) {
    return ListJobs(JobQuery{.status = status, .cursor = after_id}, limit, max_bytes);
  }
  virtual Result<Job> GetJob(int64_t job_id) = 0;  // kNotFound
  virtual Result<std::vector<Run>> GetRuns(int64_t job_id) = 0;
  virtual Result<std::optional<Run>> GetRun(int64_t run_id) = 0;

  // Cheap with millions of rows (maintained counters, no scans).
  virtual Result<QueueCounts> Counts() = 0;
  // The minutes in [from_ms, to_ms) that saw a run start or end, oldest
  // first (index range scans on runs.started_at and runs.ended_at).
  virtual Result<std::vector<MinuteStats>> Throughput(int64_t from_ms, int64_t to_ms) = 0;
  // Earliest not_before among queued jobs in the future of now_ms (claim timer).
  virtual Result<std::optional<int64_t>> NextNotBefore(int64_t now_ms) = 0;

  // Takes this node's row for `claim.incarnation` with a lease of
  // lease_ms from the store's now. kConflict, naming the holder, while
  // another incarnation holds an unexpired lease on the same node_id.
  virtual Result<NodeInfo> AcquireNode(const NodeClaim& claim) = 0;
  // The daemon re-executed in place and `incarnation` now watches these
  // runs (SPEC §14): each one still open is recorded as its. Returns the
  // ids that were open.
  virtual Result<std::vector<int64_t>> ContinueRuns(const std::string& incarnation,
                                                    const std::vector<int64_t>& run_ids) = 0;
  // Extends this incarnation's lease to now + lease_ms. kGuardMissed when
  // the row is no longer this incarnation's.
  virtual Result<LeaseRenewal> RenewLease(const NodeClaim& claim) = 0;
  // Every node's row with its open runs, by node_id.
  virtual Result<std::vector<NodeInfo>> ListNodes() = 0;
  // Closes the open runs of nodes whose lease has run out (store clock),
  // each in its own savepoint that re-checks the lease under the node row's
  // lock, so a renewal and a rescue, or two rescuers, never both win: the
  // run ends lost (node_lost) and its job is requeued (attempt spent) or
  // fails. At most `limit` runs per call.
  virtual Result<std::vector<RescuedRun>> RescueExpiredRuns(const RescueRequest& req) = 0;

  // This node's runs that another node rescued (node_lost) with a recorded
  // pid, newest first, at most `limit`: after a crash and restart their
  // processes may still live here (SQLite: none).
  virtual Result<std::vector<Run>> ListRescuedRuns(const std::string& node_id, int64_t limit) = 0;

  // A trivial write that proves the store is writable (readiness).
  virtual Status ProbeWritable() = 0;

  // Group commit: runs `ops` in one write transaction that every call made
  // inside joins as its own savepoint, so a call that fails or misses its
  // guard changes nothing and leaves the others' writes. Returns the status
  // of the commit; when it is not ok nothing any call did is kept, whatever
  // it returned. When the transaction cannot begin (e.g. the lock is held
  // elsewhere past busy_timeout) `ops` does not run.
  virtual Status InTransaction(const std::function<void()>& ops) = 0;
  // Runs `ops` (reads only) in one read transaction: all its reads see one
  // snapshot, so a job and its runs, or counts and the running list, agree.
  virtual Status InSnapshot(const std::function<void()>& ops) = 0;

  // Offline checks for `orchestrator db check`.
  virtual Result<std::vector<std::string>> IntegrityCheck() = 0;  // {"ok"} when fine
  // Every violation of I1..I6 (I5/I6 as `limits` says), one entry per job;
  // an empty list when the store is consistent.
  virtual Result<std::vector<Violation>> CheckInvariants(const InvariantLimits& limits) = 0;
  Result<std::vector<Violation>> CheckInvariants() { return CheckInvariants(InvariantLimits{}); }
};

struct JobStoreOpenOptions {
  // false: the store must already exist; nothing is created (offline tools).
  bool create = true;
  // false: no background maintenance (SQLite: the WAL checkpointer thread),
  // for short-lived processes such as `orchestrator db check`.
  bool background_maintenance = true;
};

// Shared by the backends.
// The invariant reports that read the same in SQLite and PostgreSQL: each
// row is (job id, what is wrong).
extern const char* const kInvariantI1Sql;
extern const char* const kInvariantI2Sql;
extern const char* const kInvariantI4Sql;
// Throughput: ($1 = from, $2 = to; both ms) rows of (minute, started,
// wait avg, wait max) and of (minute, finished, succeeded). The same text
// runs on both backends (SQLite numbers $N parameters in order).
extern const char* const kStartedPerMinuteSql;
extern const char* const kEndedPerMinuteSql;
// Merges the two row sets into minutes, oldest first.
std::vector<MinuteStats> MergeMinutes(std::vector<MinuteStats> started,
                                      const std::vector<MinuteStats>& ended);
// The row a Submit inserted, as a later read returns it (without reading it
// back: the hot path of a submit).
Job JobAsSubmitted(const JobSpec& spec, int64_t id, int64_t now_ms);
// Adds a job to a ListJobs page; false once the page's byte budget is spent
// (the job is in it: a page holds at least one).
bool AddToPage(JobPage& page, Job job, int64_t& bytes, int64_t max_bytes);
// The ListJobs query of `q` over the job columns `cols` of `jobs j`. Its
// parameters, numbered in this order: IdBound(), the limit, then the
// status name, the name and the serial key where `q` sets them. SQLite's
// text (?N, instr, INDEXED BY) or PostgreSQL's ($N, strpos).
std::string ListJobsSql(const JobQuery& q, const char* cols, bool postgres);
// Sets next_cursor when the page stopped at `limit` or at the budget.
void ClosePage(JobPage& page, int64_t limit, int64_t bytes, int64_t max_bytes);
// Sets the count of one status (by its name; other names are ignored).
void SetCount(QueueCounts& counts, const std::string& status, int64_t n);

// What the I1 sweep did: jobs repaired (ownership cleared, a dead or
// never-spawned run closed) and jobs left alone because their open run's
// process lives (the daemon reattaches them under orphan_policy).
struct SanitizeReport {
  std::vector<int64_t> repaired;
  std::vector<ImpossibleQueued> alive;
  std::vector<Status> errors;  // checks or repairs that failed; the rest went on
};
// Whether the run's recorded process is still that process (by identity).
using RunProcessCheck = std::function<Result<bool>(const Run& run)>;
// Finds and repairs I1 violations, checking each open run's process first:
// never spawned → closed interrupted (never_spawned); gone → closed lost
// (impossible_queued); alive → left, reported in `alive`. Guard misses (a
// row that changed meanwhile) are skipped; a failed check or repair of one
// job is reported in `errors` and the others are still handled. Fails only
// when the sweep cannot read the store.
// With `ours`, a job whose open run it rejects (another node's, SPEC §11) is
// left alone: that node, or a rescue of it, decides.
Result<SanitizeReport> SanitizeImpossibleQueued(
    JobStore& store, int64_t now_ms, const RunProcessCheck& alive,
    const std::function<bool(const Run& run)>& ours = nullptr);

// Opens the store backend `config` selects (job_store.cc is the one place
// that chooses): SQLite at config.path (SqliteStore::Open: created if
// needed, mode 0640, parent directories 0750) or PostgreSQL at config.url
// (PgStore::Open); migrated in one transaction, a newer schema refused. Fails with the
// backend's error when the store cannot be opened, or does not exist and
// options.create is false. The caller owns the store.
Result<std::unique_ptr<JobStore>> OpenJobStore(const Config::Store& config,
                                               const JobStoreOpenOptions& options = {});

}  // namespace orch
