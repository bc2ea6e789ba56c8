// The PostgreSQL backend of JobStore (SPEC §3, §11): the same tables and
// column names as SQLite plus `nodes` and `runs.node_id`, versioned
// migrations, the invariants as CHECK constraints and partial unique
// indexes, the serial gate enforced cluster-wide by a unique index, and
// claims with FOR UPDATE SKIP LOCKED. Schema and reasons: pg_store.cc.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "store/job_store.h"
#include "store/postgres/pg_conn.h"

namespace orch {

struct PgOpenOptions {
  // false: a database without our schema is an error; nothing is created.
  bool create = true;
};

class PgStore : public JobStore {
 public:
  static constexpr int kSchemaVersion = 3;
  // Announced on commit whenever the queue may hold something claimable.
  static constexpr const char* kQueueChannel = "orchestrator_queue";

  // Connects to config.url and applies pending migrations in one
  // transaction (serialized between nodes by an advisory lock held for
  // that transaction only). Fails with kCorrupt for a newer schema,
  // kNotFound for a database without the schema when !options.create, and
  // the connection's error otherwise.
  static Result<std::unique_ptr<PgStore>> Open(const Config::Store& config,
                                               const PgOpenOptions& options = {});

  Result<SubmitResult> Submit(const JobSpec& spec, int64_t now_ms) override;
  Result<std::optional<Claimed>> ClaimNext(const ClaimRequest& req) override;
  Status RecordSpawned(int64_t job_id, int64_t run_id, const ProcessIdentity& id,
                       const std::string& log_path,
                       const std::string& cgroup = "") override;
  Result<FinishResult> FinishRun(const RunEnd& end) override;
  Result<CancelResult> Cancel(int64_t job_id, int64_t now_ms) override;
  Result<Job> Retry(int64_t job_id, int64_t now_ms) override;
  Status SetPaused(bool paused) override;
  Result<bool> IsPaused() override;
  Result<std::vector<ImpossibleQueued>> FindImpossibleQueued() override;
  Status RepairImpossibleQueued(int64_t job_id, std::optional<int64_t> open_run_id,
                                RunOutcome outcome, const std::string& reason,
                                int64_t now_ms) override;
  Status ReattachOpenRun(int64_t job_id, int64_t run_id, int64_t now_ms) override;
  Result<std::vector<RunningEntry>> ListRunning() override;
  Result<std::vector<RunningBrief>> ListRunningBrief() override;
  Result<JobPage> ListJobs(const JobQuery& q, int64_t limit, int64_t max_bytes) override;
  Result<Job> GetJob(int64_t job_id) override;
  Result<std::vector<Run>> GetRuns(int64_t job_id) override;
  Result<std::optional<Run>> GetRun(int64_t run_id) override;
  Result<QueueCounts> Counts() override;
  Result<std::vector<MinuteStats>> Throughput(int64_t from_ms, int64_t to_ms) override;
  Result<std::optional<int64_t>> NextNotBefore(int64_t now_ms) override;
  Result<NodeInfo> AcquireNode(const NodeClaim& claim) override;
  Result<std::vector<int64_t>> ContinueRuns(const std::string& incarnation,
                                            const std::vector<int64_t>& run_ids) override;
  Result<LeaseRenewal> RenewLease(const NodeClaim& claim) override;
  Result<std::vector<NodeInfo>> ListNodes() override;
  Result<std::vector<RescuedRun>> RescueExpiredRuns(const RescueRequest& req) override;
  Result<std::vector<Run>> ListRescuedRuns(const std::string& node_id, int64_t limit) override;
  Status ProbeWritable() override;
  Status InTransaction(const std::function<void()>& ops) override;
  Status InSnapshot(const std::function<void()>& ops) override;
  Result<std::vector<std::string>> IntegrityCheck() override;
  using JobStore::CheckInvariants;
  Result<std::vector<Violation>> CheckInvariants(const InvariantLimits& limits) override;

  PgConn* ConnForTest() { return conn_.get(); }

 private:
  explicit PgStore(std::unique_ptr<PgConn> conn) : conn_(std::move(conn)) {}
  Status Migrate(bool create);
  Result<Job> LoadJob(int64_t job_id);
  Result<Run> LoadRun(int64_t run_id);

  std::unique_ptr<PgConn> conn_;
};

}  // namespace orch
