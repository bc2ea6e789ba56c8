// The SQLite backend of JobStore (SPEC §3): WAL, versioned migrations,
// invariants as CHECK constraints and partial indexes, counters maintained by
// triggers. Schema and the reasons behind each index: sqlite_store.cc.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "store/job_store.h"
#include "store/sqlite_db.h"
#include "store/wal_checkpointer.h"

namespace orch {

struct SqliteOpenOptions {
  // false: a missing database file is an error (offline tools must not
  // create one), and no parent directory is created.
  bool create = true;
  // > 0: WAL checkpoints run on a background thread (own connection) every
  // this many ms, and SQLite's in-line automatic checkpoint only kicks in
  // as a safety net past kSafetyNetCheckpointPages. 0: SQLite's default
  // (checkpoint inside the commit that crosses 1000 pages).
  int64_t background_checkpoint_ms = 1000;
};

class SqliteStore : public JobStore {
 public:
  // The schema version this binary writes (PRAGMA user_version).
  static constexpr int kSchemaVersion = 4;
  static constexpr int kSafetyNetCheckpointPages = 20000;

  // Opens (creating if `options` say so: mode 0640, parent directories
  // 0750) the store at config.path and applies migrations in one
  // transaction. WAL, synchronous from config, busy_timeout, foreign keys on.
  // Fails with kCorrupt when the file's schema is newer than kSchemaVersion,
  // kInvalidArgument for a bad `synchronous` value. Callers outside the store
  // and its tests use OpenJobStore (job_store.h).
  static Result<std::unique_ptr<SqliteStore>> Open(const Config::Store& config,
                                                   const SqliteOpenOptions& options = {});

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

  // Test hooks: caps the file at `pages` pages (PRAGMA max_page_count) so a
  // test can provoke SQLITE_FULL; and the raw connection.
  Status SetMaxPageCountForTest(int64_t pages);
  SqliteDb* DbForTest() { return db_.get(); }
  const WalCheckpointer* CheckpointerForTest() const { return checkpointer_.get(); }
  // (name, SQL) of the read paths that must use an index, for the
  // EXPLAIN QUERY PLAN test.
  static std::vector<std::pair<std::string, std::string>> HotQueriesForTest();

 private:
  explicit SqliteStore(std::unique_ptr<SqliteDb> db) : db_(std::move(db)) {}
  Status Configure(const Config::Store& config);
  Status Migrate();
  Result<Job> LoadJob(int64_t job_id);
  Result<Run> LoadRun(int64_t run_id);

  // Null when background_checkpoint_ms is 0. Has its own connection.
  std::unique_ptr<WalCheckpointer> checkpointer_;
  std::unique_ptr<SqliteDb> db_;
  // The file opened, to notice it being removed or replaced underneath us
  // (SQLite would go on writing to the unlinked inode and lose it all).
  std::string path_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

}  // namespace orch
