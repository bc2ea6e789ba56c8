#include "store/sqlite_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <set>
#include <utility>

#include "base/make_dirs.h"

namespace orch {
namespace {

// Each entry moves the schema from version i to i+1; all pending ones run in
// one transaction at open. Never edit a released entry: append a new one.
constexpr const char* kMigrations[] = {
    // v1: the SPEC §3 tables.
    R"sql(
CREATE TABLE jobs (
  id               INTEGER PRIMARY KEY,
  name             TEXT    NOT NULL DEFAULT '',
  argv             TEXT    NOT NULL,
  env              TEXT    NOT NULL DEFAULT '{}',
  cwd              TEXT    NOT NULL DEFAULT '',
  status           TEXT    NOT NULL
                   CHECK (status IN ('queued','running','succeeded','failed','cancelled')),
  priority         INTEGER NOT NULL DEFAULT 0,
  serial_key       TEXT,
  attempts         INTEGER NOT NULL DEFAULT 0,
  max_attempts     INTEGER NOT NULL DEFAULT 3,
  timeout_s        INTEGER,
  not_before       INTEGER NOT NULL DEFAULT 0,
  idempotency_key  TEXT UNIQUE,
  created_at       INTEGER NOT NULL,
  updated_at       INTEGER NOT NULL,
  started_at       INTEGER,
  finished_at      INTEGER,
  run_id           INTEGER,
  pid              INTEGER,
  exit_code        INTEGER,
  signal           INTEGER,
  outcome          TEXT,
  error            TEXT,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  -- I1 (the ORCH-126 incident): a queued job owns no run and no process.
  CONSTRAINT i1_queued_owns_nothing
    CHECK (status <> 'queued' OR (run_id IS NULL AND pid IS NULL AND started_at IS NULL)),
  -- I2, the part a row can check: a running job names its run.
  CONSTRAINT i2_running_has_run CHECK (status <> 'running' OR run_id IS NOT NULL),
  -- I4, the part a row can check: a terminal job says when it ended.
  CONSTRAINT i4_terminal_has_finished_at
    CHECK (status NOT IN ('succeeded','failed','cancelled') OR finished_at IS NOT NULL)
);

CREATE TABLE runs (
  id          INTEGER PRIMARY KEY,
  job_id      INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  attempt     INTEGER NOT NULL,
  incarnation TEXT    NOT NULL,
  boot_id     TEXT,
  pidns_ino   INTEGER,
  pid         INTEGER,
  start_time  INTEGER,
  pidfs_ino   INTEGER,
  started_at  INTEGER NOT NULL,
  ended_at    INTEGER,
  outcome     TEXT CHECK (outcome IS NULL OR outcome IN ('succeeded','failed','transient',
                'timeout','cancelled','lost','interrupted','spawn_failed')),
  reason      TEXT,
  exit_code   INTEGER,
  signal      INTEGER,
  log_path    TEXT
);

-- I3: at most one open run per job.
CREATE UNIQUE INDEX runs_one_open_per_job ON runs(job_id) WHERE ended_at IS NULL;
CREATE INDEX runs_by_job ON runs(job_id, id);

-- Claim walks this in order and stops at the first claimable row.
CREATE INDEX jobs_claim ON jobs(priority DESC, id) WHERE status = 'queued';
-- The serial gate: keys held by running jobs.
CREATE INDEX jobs_running_serial ON jobs(serial_key) WHERE status = 'running';
CREATE INDEX jobs_running ON jobs(id) WHERE status = 'running';
CREATE INDEX jobs_status_id ON jobs(status, id);
CREATE INDEX jobs_queued_created ON jobs(created_at) WHERE status = 'queued';
CREATE INDEX jobs_queued_not_before ON jobs(not_before) WHERE status = 'queued';
-- The I1 sweep. Empty while the CHECK holds; only rows written with the
-- check disabled (or by older code) land here, so the sweep costs nothing.
CREATE INDEX jobs_impossible_queued ON jobs(id)
  WHERE status = 'queued' AND (run_id IS NOT NULL OR pid IS NOT NULL OR started_at IS NOT NULL);

-- Counts without scanning: one row per status, kept by triggers.
CREATE TABLE job_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO job_counts(status, n) VALUES
  ('queued', 0), ('running', 0), ('succeeded', 0), ('failed', 0), ('cancelled', 0);
CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN
  UPDATE job_counts SET n = n + 1 WHERE status = NEW.status;
END;
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN
  UPDATE job_counts SET n = n - 1 WHERE status = OLD.status;
END;
CREATE TRIGGER jobs_count_update AFTER UPDATE OF status ON jobs
  WHEN OLD.status <> NEW.status BEGIN
  UPDATE job_counts SET n = n - 1 WHERE status = OLD.status;
  UPDATE job_counts SET n = n + 1 WHERE status = NEW.status;
END;

CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
)sql",
    // v2 (SPEC §3, §11): the node that claimed a run, and the nodes table,
    // which on SQLite holds the one node's row.
    R"sql(
ALTER TABLE runs ADD COLUMN node_id TEXT NOT NULL DEFAULT '';
CREATE TABLE nodes (
  node_id      TEXT    PRIMARY KEY,
  incarnation  TEXT    NOT NULL,
  started_at   INTEGER NOT NULL,
  heartbeat_at INTEGER NOT NULL,
  lease_until  INTEGER NOT NULL,
  version      TEXT    NOT NULL DEFAULT ''
) WITHOUT ROWID;
)sql",
    // v3 (SPEC §12): per-job cgroup limits and stall timeout; the run's
    // cgroup and what it measured; outcome 'stalled'. SQLite cannot change
    // a CHECK in place, so runs is copied into a new table.
    R"sql(
ALTER TABLE jobs ADD COLUMN memory_max INTEGER;
ALTER TABLE jobs ADD COLUMN cpu_max REAL;
ALTER TABLE jobs ADD COLUMN pids_max INTEGER;
ALTER TABLE jobs ADD COLUMN stall_timeout_s INTEGER;
CREATE TABLE runs_v3 (
  id             INTEGER PRIMARY KEY,
  job_id         INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
  attempt        INTEGER NOT NULL,
  incarnation    TEXT    NOT NULL,
  boot_id        TEXT,
  pidns_ino      INTEGER,
  pid            INTEGER,
  start_time     INTEGER,
  pidfs_ino      INTEGER,
  started_at     INTEGER NOT NULL,
  ended_at       INTEGER,
  outcome        TEXT CHECK (outcome IS NULL OR outcome IN ('succeeded','failed','transient',
                   'timeout','cancelled','lost','interrupted','spawn_failed','stalled')),
  reason         TEXT,
  exit_code      INTEGER,
  signal         INTEGER,
  log_path       TEXT,
  node_id        TEXT    NOT NULL DEFAULT '',
  cgroup         TEXT,
  cpu_usec       INTEGER,
  mem_peak_bytes INTEGER,
  oom_kills      INTEGER
);
INSERT INTO runs_v3(id, job_id, attempt, incarnation, boot_id, pidns_ino, pid, start_time,
                    pidfs_ino, started_at, ended_at, outcome, reason, exit_code, signal, log_path,
                    node_id)
  SELECT id, job_id, attempt, incarnation, boot_id, pidns_ino, pid, start_time, pidfs_ino,
         started_at, ended_at, outcome, reason, exit_code, signal, log_path, node_id FROM runs;
DROP TABLE runs;
ALTER TABLE runs_v3 RENAME TO runs;
CREATE UNIQUE INDEX runs_one_open_per_job ON runs(job_id) WHERE ended_at IS NULL;
CREATE INDEX runs_by_job ON runs(job_id, id);
-- The throughput chart (GET /stats) reads the last hour of these.
CREATE INDEX runs_started_at ON runs(started_at);
CREATE INDEX runs_ended_at ON runs(ended_at) WHERE ended_at IS NOT NULL;
)sql",
    // v4 (SPEC §13): the status page lists the jobs of one serial key.
    R"sql(
CREATE INDEX jobs_by_key ON jobs(serial_key, id) WHERE serial_key IS NOT NULL;
)sql",
};
constexpr int kMigrationCount = sizeof(kMigrations) / sizeof(kMigrations[0]);
static_assert(kMigrationCount == SqliteStore::kSchemaVersion);

#define ORCH_JOB_COLS                                                                        \
  "j.id, j.name, j.argv, j.env, j.cwd, j.status, j.priority, j.serial_key, j.attempts, "    \
  "j.max_attempts, j.timeout_s, j.not_before, j.idempotency_key, j.created_at, j.updated_at, " \
  "j.started_at, j.finished_at, j.run_id, j.pid, j.exit_code, j.signal, j.outcome, j.error, " \
  "j.cancel_requested, j.memory_max, j.cpu_max, j.pids_max, j.stall_timeout_s"
constexpr int kJobColCount = 28;
#define ORCH_RUN_COLS                                                                          \
  "r.id, r.job_id, r.attempt, r.incarnation, r.boot_id, r.pidns_ino, r.pid, r.start_time, "   \
  "r.pidfs_ino, r.started_at, r.ended_at, r.outcome, r.reason, r.exit_code, r.signal, "       \
  "r.log_path, r.node_id, r.cgroup, r.cpu_usec, r.mem_peak_bytes, r.oom_kills"

// The hot read paths, named so that the query-plan test checks the very
// statements the store runs (none may scan jobs).
constexpr const char* kRunningCountSql = "SELECT n FROM job_counts WHERE status='running'";
// I6 without head-of-line blocking: a gated row is skipped and the walk goes
// on to the next one. The NOT IN list is built once per statement.
constexpr const char* kClaimSql =
    "SELECT id, attempts FROM jobs INDEXED BY jobs_claim "
    "WHERE status='queued' AND not_before <= ?1 "
    // A queued job with an open run waits for the I1 sweep, which checks
    // that run's process before closing it.
    "AND NOT EXISTS (SELECT 1 FROM runs INDEXED BY runs_one_open_per_job "
    " WHERE runs.job_id = jobs.id AND runs.ended_at IS NULL) "
    "AND (?2 = 0 OR serial_key IS NULL OR serial_key NOT IN "
    "(SELECT serial_key FROM jobs INDEXED BY jobs_running_serial "
    " WHERE status='running' AND serial_key IS NOT NULL)) "
    "ORDER BY priority DESC, id LIMIT 1";
constexpr const char* kCountsSql = "SELECT status, n FROM job_counts";
constexpr const char* kOldestQueuedSql =
    "SELECT MIN(created_at) FROM jobs INDEXED BY jobs_queued_created WHERE status='queued'";
// Must repeat the partial index's WHERE term for term: SQLite only uses a
// partial index when the query's WHERE visibly implies the index's.
constexpr const char* kImpossibleQueuedSql =
    "SELECT id FROM jobs INDEXED BY jobs_impossible_queued WHERE status = 'queued' AND "
    "(run_id IS NOT NULL OR pid IS NOT NULL OR started_at IS NOT NULL) ORDER BY id";
constexpr const char* kQueuedWithOpenRunSql =
    "SELECT r.job_id FROM runs r INDEXED BY runs_one_open_per_job JOIN jobs j ON j.id = r.job_id "
    "WHERE r.ended_at IS NULL AND j.status = 'queued'";
constexpr const char* kOpenRunOfJobSql =
    "SELECT " ORCH_RUN_COLS " FROM runs r INDEXED BY runs_one_open_per_job "
    "WHERE r.job_id=? AND r.ended_at IS NULL";
constexpr const char* kNextNotBeforeSql =
    "SELECT MIN(not_before) FROM jobs INDEXED BY jobs_queued_not_before "
    "WHERE status='queued' AND not_before > ?";
constexpr const char* kListRunningSql =
    "SELECT " ORCH_JOB_COLS ", " ORCH_RUN_COLS " FROM jobs j INDEXED BY jobs_running "
    "JOIN runs r ON r.id = j.run_id WHERE j.status='running' ORDER BY j.id";
constexpr const char* kListRunningBriefSql =
    "SELECT j.id, r.id, r.node_id, r.pid, j.serial_key, r.started_at, j.cancel_requested "
    "FROM jobs j "
    "INDEXED BY jobs_running JOIN runs r ON r.id = j.run_id WHERE j.status='running' "
    "ORDER BY j.id";
constexpr const char* kGetJobSql = "SELECT " ORCH_JOB_COLS " FROM jobs j WHERE j.id=?";
constexpr const char* kGetRunSql = "SELECT " ORCH_RUN_COLS " FROM runs r WHERE r.id=?";
constexpr const char* kGetRunsSql =
    "SELECT " ORCH_RUN_COLS " FROM runs r WHERE r.job_id=? ORDER BY r.id";

Job ReadJob(const Stmt& st, int o) {
  Job j;
  j.id = st.Int(o + 0);
  j.name = st.Text(o + 1);
  j.argv = ArgvFromJson(st.Text(o + 2));
  j.env = EnvFromJson(st.Text(o + 3));
  j.cwd = st.Text(o + 4);
  if (!ParseJobStatus(st.Text(o + 5), &j.status)) j.status = JobStatus::kFailed;
  j.priority = st.Int(o + 6);
  j.serial_key = st.OptText(o + 7);
  j.attempts = st.Int(o + 8);
  j.max_attempts = st.Int(o + 9);
  j.timeout_s = st.OptInt(o + 10);
  j.not_before = st.Int(o + 11);
  j.idempotency_key = st.OptText(o + 12);
  j.created_at = st.Int(o + 13);
  j.updated_at = st.Int(o + 14);
  j.started_at = st.OptInt(o + 15);
  j.finished_at = st.OptInt(o + 16);
  j.run_id = st.OptInt(o + 17);
  j.pid = st.OptInt(o + 18);
  j.exit_code = st.OptInt(o + 19);
  j.signal = st.OptInt(o + 20);
  j.outcome = st.OptText(o + 21);
  j.error = st.OptText(o + 22);
  j.cancel_requested = st.Int(o + 23) != 0;
  j.memory_max = st.OptInt(o + 24);
  j.cpu_max = st.OptDouble(o + 25);
  j.pids_max = st.OptInt(o + 26);
  j.stall_timeout_s = st.OptInt(o + 27);
  return j;
}

Run ReadRun(const Stmt& st, int o) {
  Run r;
  r.id = st.Int(o + 0);
  r.job_id = st.Int(o + 1);
  r.attempt = st.Int(o + 2);
  r.incarnation = st.Text(o + 3);
  r.identity.boot_id = st.Text(o + 4);
  r.identity.pidns_ino = static_cast<uint64_t>(st.Int(o + 5));
  r.identity.pid = st.Int(o + 6);
  r.identity.start_time = static_cast<uint64_t>(st.Int(o + 7));
  r.identity.pidfs_ino = static_cast<uint64_t>(st.Int(o + 8));
  r.started_at = st.Int(o + 9);
  r.ended_at = st.OptInt(o + 10);
  r.outcome = st.OptText(o + 11);
  r.reason = st.OptText(o + 12);
  r.exit_code = st.OptInt(o + 13);
  r.signal = st.OptInt(o + 14);
  r.log_path = st.Text(o + 15);
  r.node_id = st.Text(o + 16);
  r.cgroup = st.Text(o + 17);
  r.cpu_usec = st.OptInt(o + 18);
  r.mem_peak_bytes = st.OptInt(o + 19);
  r.oom_kills = st.OptInt(o + 20);
  return r;
}

Status GuardMissed(const std::string& what) { return Status(Code::kGuardMissed, what); }

int64_t WallMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::optional<std::string> NullIfEmpty(const std::string& s) {
  if (s.empty()) return std::nullopt;
  return s;
}

}  // namespace

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const Config::Store& config,
                                                       const SqliteOpenOptions& options) {
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
  if (options.create) {
    ORCH_RETURN_IF_ERROR(MakeParentDirs(config.path));
    // SQLite would create the file 0644; make it 0640 first (its -wal and
    // -shm files copy the database file's mode).
    int fd = open(config.path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) return FromErrno("cannot create " + config.path);
    close(fd);
    flags |= SQLITE_OPEN_CREATE;
  }
  ORCH_ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db, SqliteDb::Open(config.path, flags));
  std::unique_ptr<SqliteStore> store(new SqliteStore(std::move(db)));
  struct stat st {};
  if (stat(config.path.c_str(), &st) == 0) {
    store->path_ = config.path;
    store->dev_ = st.st_dev;
    store->ino_ = st.st_ino;
  }
  ORCH_RETURN_IF_ERROR(store->Configure(config));
  ORCH_RETURN_IF_ERROR(store->Migrate());
  if (options.background_checkpoint_ms > 0) {
    ORCH_RETURN_IF_ERROR(store->db_->Exec("PRAGMA wal_autocheckpoint=" +
                                          std::to_string(kSafetyNetCheckpointPages)));
    ORCH_ASSIGN_OR_RETURN(store->checkpointer_,
                          WalCheckpointer::Start(config.path, options.background_checkpoint_ms));
  }
  return store;
}

Status SqliteStore::Configure(const Config::Store& config) {
  const std::string& sync = config.synchronous;
  if (sync != "off" && sync != "normal" && sync != "full" && sync != "extra") {
    return Status(Code::kInvalidArgument,
                  "store.synchronous must be off, normal, full or extra, not \"" + sync + "\"");
  }
  sqlite3_busy_timeout(db_->raw(), static_cast<int>(config.busy_timeout_ms));
  {
    ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Prepare("PRAGMA journal_mode=WAL"));
    ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row || st.Text(0) != "wal") {
      return Status(Code::kIo, "cannot switch " + config.path + " to WAL mode");
    }
  }
  ORCH_RETURN_IF_ERROR(db_->Exec("PRAGMA synchronous=" + sync + "; PRAGMA foreign_keys=ON;"));
  return Status::Ok();
}

Status SqliteStore::Migrate() {
  auto read_version = [this]() -> Result<int64_t> {
    ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Prepare("PRAGMA user_version"));
    ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
    return row ? st.Int(0) : 0;
  };
  auto newer = [](int64_t v) {
    return Status(Code::kCorrupt, "schema version " + std::to_string(v) +
                                      " is newer than this binary supports (" +
                                      std::to_string(kSchemaVersion) + ")");
  };
  ORCH_ASSIGN_OR_RETURN(int64_t version, read_version());
  if (version > kSchemaVersion) return newer(version);
  if (version == kSchemaVersion) return Status::Ok();

  Transaction txn(db_.get());
  ORCH_RETURN_IF_ERROR(txn.Begin());
  // Another process may have migrated between the read and the lock.
  ORCH_ASSIGN_OR_RETURN(version, read_version());
  if (version > kSchemaVersion) return newer(version);
  for (int64_t v = version; v < kSchemaVersion; ++v) {
    ORCH_RETURN_IF_ERROR(db_->Exec(kMigrations[v]));
  }
  ORCH_RETURN_IF_ERROR(db_->Exec("PRAGMA user_version=" + std::to_string(kSchemaVersion)));
  return txn.Commit();
}

Result<Job> SqliteStore::LoadJob(int64_t job_id) {
  ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached(kGetJobSql));
  st.Bind(1, job_id);
  ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status(Code::kNotFound, "no job " + std::to_string(job_id));
  return ReadJob(st, 0);
}

Result<Run> SqliteStore::LoadRun(int64_t run_id) {
  ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached(kGetRunSql));
  st.Bind(1, run_id);
  ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status(Code::kNotFound, "no run " + std::to_string(run_id));
  return ReadRun(st, 0);
}

Result<SubmitResult> SqliteStore::Submit(const JobSpec& spec, int64_t now_ms) {
  if (spec.argv.empty()) return Status(Code::kInvalidArgument, "argv must not be empty");
  Transaction txn(db_.get());
  ORCH_RETURN_IF_ERROR(txn.Begin());
  if (spec.idempotency_key) {
    ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached("SELECT id FROM jobs WHERE idempotency_key=?"));
    st.Bind(1, *spec.idempotency_key);
    ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) {
      int64_t id = st.Int(0);
      ORCH_ASSIGN_OR_RETURN(Job job, LoadJob(id));
      return SubmitResult{std::move(job), false};
    }
  }
  {
    ORCH_ASSIGN_OR_RETURN(
        Stmt st, db_->Cached("INSERT INTO jobs(name, argv, env, cwd, status, priority, serial_key, "
                             "attempts, max_attempts, timeout_s, not_before, idempotency_key, "
                             "created_at, updated_at, memory_max, cpu_max, pids_max, "
                             "stall_timeout_s) "
                             "VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, 0, ?7, ?8, ?9, ?10, ?11, ?11, "
                             "?12, ?13, ?14, ?15)"));
    st.Bind(1, spec.name)
        .Bind(2, ArgvToJson(spec.argv))
        .Bind(3, EnvToJson(spec.env))
        .Bind(4, spec.cwd)
        .Bind(5, spec.priority)
        .Bind(6, spec.serial_key)
        .Bind(7, spec.max_attempts)
        .Bind(8, spec.timeout_s)
        .Bind(9, spec.not_before == 0 ? now_ms : spec.not_before)
        .Bind(10, spec.idempotency_key)
        .Bind(11, now_ms)
        .Bind(12, spec.memory_max)
        .Bind(13, spec.cpu_max)
        .Bind(14, spec.pids_max)
        .Bind(15, spec.stall_timeout_s);
    ORCH_RETURN_IF_ERROR(st.Run());
  }
  Job job = JobAsSubmitted(spec, db_->LastInsertRowid(), now_ms);
  ORCH_RETURN_IF_ERROR(txn.Commit());
  return SubmitResult{std::move(job), true};
}

Result<std::optional<Claimed>> SqliteStore::ClaimNext(const ClaimRequest& req) {
  Transaction txn(db_.get());
  ORCH_RETURN_IF_ERROR(txn.Begin());
  // I5: counted inside the write transaction, so two claimers cannot both
  // see a free slot.
  {
    ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached(kRunningCountSql));
    ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row && st.Int(0) >= req.max_concurrency) return std::optional<Claimed>();
  }
  int64_t job_id = 0, attempts = 0;
  {
    ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached(kClaimSql));
    st.Bind(1, req.now_ms).Bind(2, static_cast<int64_t>(req.serial_gate_enabled ? 1 : 0));
    ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return std::optional<Claimed>();
    job_id = st.Int(0);
    attempts = st.Int(1);
  }
  // kClaimSql only returns queued rows.
  ORCH_ASSIGN_OR_RETURN(ClaimTransition t,
                        TransitionOnClaim(JobState{
                            .id = job_id, .status = JobStatus::kQueued, .attempts = attempts}));
  int64_t run_id = 0;
  {
    ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached("INSERT INTO runs(job_id, attempt, incarnation, "
                                               "node_id, started_at) VALUES (?, ?, ?, ?, ?)"));
    st.Bind(1, job_id).Bind(2, t.attempts).Bind(3, req.incarnation).Bind(4, req.node_id);
    st.Bind(5, req.now_ms);
    ORCH_RETURN_IF_ERROR(st.Run());
    run_id = db_->LastInsertRowid();
  }
  {
    ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached("UPDATE jobs SET status=?5, run_id=?3, pid=NULL, "
                                               "started_at=?4, attempts=?6, updated_at=?4 "
                                               "WHERE id=?1 AND status='queued' AND attempts=?2"));
    st.Bind(1, job_id)
        .Bind(2, attempts)
        .Bind(3, run_id)
        .Bind(4, req.now_ms)
        .Bind(5, JobStatusName(t.to))
        .Bind(6, t.attempts);
    ORCH_RETURN_IF_ERROR(st.Run());
    if (db_->Changes() == 0) return GuardMissed("job " + std::to_string(job_id) + " left queued");
  }
  Claimed c;
  ORCH_ASSIGN_OR_RETURN(c.job, LoadJob(job_id));
  ORCH_ASSIGN_OR_RETURN(c.run, LoadRun(run_id));
  ORCH_RETURN_IF_ERROR(txn.Commit());
  return std::optional<Claimed>(std::move(c));
}

Status SqliteStore::RecordSpawned(int64_t job_id, int64_t run_id, const ProcessIdentity& id,
                                  const std::string& log_path, const std::string& cgroup) {
  Transaction txn(db_.get());
  ORCH_RETURN_IF_ERROR(txn.Begin());
  {
    ORCH_ASSIGN_OR_RETURN(
        Stmt st, db_->Cached("UPDATE runs SET boot_id=?3, pidns_ino=?4, pid=?5, start_time=?6, "
                             "pidfs_ino=?7, log_path=?8, cgroup=?9 "
                             "WHERE id=?2 AND job_id=?1 AND ended_at IS NULL"));
    st.Bind(1, job_id)
        .Bind(2, run_id)
        .Bind(3, id.boot_id)
        .Bind(4, static_cast<int64_t>(id.pidns_ino))
        .Bind(5, id.pid)
        .Bind(6, static_cast<int64_t>(id.start_time))
        .Bind(7, static_cast<int64_t>(id.pidfs_ino))
        .Bind(8, log_path)
        .Bind(9, NullIfEmpty(cgroup));
    ORCH_RETURN_IF_ERROR(st.Run());
    if (db_->Changes() == 0) {
      return GuardMissed("run " + std::to_string(run_id) + " of job " + std::to_string(job_id) +
                         " is not open");
    }
  }
  {
    ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached("UPDATE jobs SET pid=?3 "
                                               "WHERE id=?1 AND status='running' AND run_id=?2"));
    st.Bind(1, job_id).Bind(2, run_id).Bind(3, id.pid);
    ORCH_RETURN_IF_ERROR(st.Run());
    if (db_->Changes() == 0) {
      return GuardMissed("job " + std::to_string(job_id) + " is not running run " +
                         std::to_string(run_id));
    }
  }
  return txn.Commit();
}

Result<FinishResult> SqliteStore::FinishRun(const RunEnd& end) {
  Transaction txn(db_.get());
  ORCH_RETURN_IF_ERROR(txn.Begin());
  ORCH_ASSIGN_OR_RETURN(Job job, LoadJob(end.job_id));
  if (job.status != JobStatus::kRunning || job.run_id != end.run_id) {
    return GuardMissed("job " + std::to_string(end.job_id) + " is not running run " +
                       std::to_string(end.run_id));
  }
  ORCH_ASSIGN_OR_RETURN(RunEndTransition t, TransitionOnRunEnd(StateOf(job), end.outcome,
                                                               end.now_ms, end.retry_not_before));
  const char* outcome = RunOutcomeName(end.outcome);
  {
    ORCH_ASSIGN_OR_RETURN(
        Stmt st, db_->Cached("UPDATE runs SET ended_at=?3, outcome=?4, reason=?5, exit_code=?6, "
                             "signal=?7, cpu_usec=?8, mem_peak_bytes=?9, oom_kills=?10 "
                             "WHERE id=?2 AND job_id=?1 AND ended_at IS NULL"));
    st.Bind(1, end.job_id)
        .Bind(2, end.run_id)
        .Bind(3, end.now_ms)
        .Bind(4, outcome)
        .Bind(5, NullIfEmpty(end.reason))
        .Bind(6, end.exit_code)
        .Bind(7, end.signal)
        .Bind(8, end.cpu_usec)
        .Bind(9, end.mem_peak_bytes)
        .Bind(10, end.oom_kills);
    ORCH_RETURN_IF_ERROR(st.Run());
    if (db_->Changes() == 0) {
      return GuardMissed("run " + std::to_string(end.run_id) + " is already closed");
    }
  }
  if (t.to == JobStatus::kQueued) {
    // I1: the move to queued clears ownership in the same statement.
    ORCH_ASSIGN_OR_RETURN(
        Stmt st,
        db_->Cached("UPDATE jobs SET status='queued', run_id=NULL, pid=NULL, started_at=NULL, "
                    "attempts=attempts-?3, not_before=?4, exit_code=?5, signal=?6, outcome=?7, "
                    "error=?8, updated_at=?9 WHERE id=?1 AND status='running' AND run_id=?2"));
    st.Bind(1, end.job_id)
        .Bind(2, end.run_id)
        .Bind(3, static_cast<int64_t>(t.attempt_spent ? 0 : 1))
        .Bind(4, *t.not_before)
        .Bind(5, end.exit_code)
        .Bind(6, end.signal)
        .Bind(7, outcome)
        .Bind(8, NullIfEmpty(end.error))
        .Bind(9, end.now_ms);
    ORCH_RETURN_IF_ERROR(st.Run());
  } else {
    ORCH_ASSIGN_OR_RETURN(
        Stmt st,
        db_->Cached("UPDATE jobs SET status=?3, pid=NULL, finished_at=?4, exit_code=?5, "
                    "signal=?6, outcome=?7, error=?8, updated_at=?4 "
                    "WHERE id=?1 AND status='running' AND run_id=?2"));
    st.Bind(1, end.job_id)
        .Bind(2, end.run_id)
        .Bind(3, JobStatusName(t.to))
        .Bind(4, end.now_ms)
        .Bind(5, end.exit_code)
        .Bind(6, end.signal)
        .Bind(7, outcome)
        .Bind(8, NullIfEmpty(end.error));
    ORCH_RETURN_IF_ERROR(st.Run());
  }
  if (db_->Changes() == 0) {
    return GuardMissed("job " + std::to_string(end.job_id) + " is not running run " +
                       std::to_string(end.run_id));
  }
  ORCH_RETURN_IF_ERROR(txn.Commit());
  return FinishResult{t.to};
}

Result<CancelResult> SqliteStore::Cancel(int64_t job_id, int64_t now_ms) {
  Transaction txn(db_.get());
  ORCH_RETURN_IF_ERROR(txn.Begin());
  ORCH_ASSIGN_OR_RETURN(Job job, LoadJob(job_id));
  ORCH_ASSIGN_OR_RETURN(CancelTransition t, TransitionOnCancel(StateOf(job)));
  if (t.effect == CancelEffect::kAlreadyRequested) return CancelResult{t.effect, std::move(job)};
  if (t.effect == CancelEffect::kCancelled) {
    ORCH_ASSIGN_OR_RETURN(
        Stmt st,
        db_->Cached("UPDATE jobs SET status='cancelled', finished_at=?2, updated_at=?2, "
                    "cancel_requested=?3, outcome='cancelled', error='cancelled while queued' "
                    "WHERE id=?1 AND status='queued'"));
    st.Bind(1, job_id).Bind(2, now_ms).Bind(3, static_cast<int64_t>(t.cancel_requested));
    ORCH_RETURN_IF_ERROR(st.Run());
    if (db_->Changes() == 0) return GuardMissed("job " + std::to_string(job_id) + " left queued");
  } else {
    ORCH_ASSIGN_OR_RETURN(Stmt st,
                          db_->Cached("UPDATE jobs SET cancel_requested=?4, updated_at=?3 "
                                      "WHERE id=?1 AND status='running' AND run_id IS ?2"));
    st.Bind(1, job_id)
        .Bind(2, job.run_id)
        .Bind(3, now_ms)
        .Bind(4, static_cast<int64_t>(t.cancel_requested));
    ORCH_RETURN_IF_ERROR(st.Run());
    if (db_->Changes() == 0) return GuardMissed("job " + std::to_string(job_id) + " left running");
  }
  ORCH_ASSIGN_OR_RETURN(job, LoadJob(job_id));
  ORCH_RETURN_IF_ERROR(txn.Commit());
  return CancelResult{t.effect, std::move(job)};
}

Result<Job> SqliteStore::Retry(int64_t job_id, int64_t now_ms) {
  Transaction txn(db_.get());
  ORCH_RETURN_IF_ERROR(txn.Begin());
  ORCH_ASSIGN_OR_RETURN(Job job, LoadJob(job_id));
  ORCH_ASSIGN_OR_RETURN(RetryTransition t, TransitionOnRetry(StateOf(job), now_ms));
  {
    // I1: the move to queued clears ownership in the same statement.
    ORCH_ASSIGN_OR_RETURN(
        Stmt st,
        db_->Cached("UPDATE jobs SET status='queued', run_id=NULL, pid=NULL, started_at=NULL, "
                    "attempts=?4, finished_at=NULL, outcome=NULL, error=NULL, exit_code=NULL, "
                    "signal=NULL, cancel_requested=?6, not_before=?5, updated_at=?3 "
                    "WHERE id=?1 AND status=?2"));
    st.Bind(1, job_id)
        .Bind(2, JobStatusName(job.status))
        .Bind(3, now_ms)
        .Bind(4, t.attempts)
        .Bind(5, t.not_before)
        .Bind(6, static_cast<int64_t>(t.cancel_requested));
    ORCH_RETURN_IF_ERROR(st.Run());
    if (db_->Changes() == 0) return GuardMissed("job " + std::to_string(job_id) + " changed");
  }
  ORCH_ASSIGN_OR_RETURN(job, LoadJob(job_id));
  ORCH_RETURN_IF_ERROR(txn.Commit());
  return job;
}

Status SqliteStore::SetPaused(bool paused) {
  Transaction txn(db_.get());
  ORCH_RETURN_IF_ERROR(txn.Begin());
  ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached("INSERT INTO settings(key, value) VALUES ('paused', ?) "
                                             "ON CONFLICT(key) DO UPDATE SET value=excluded.value"));
  st.Bind(1, paused ? "1" : "0");
  ORCH_RETURN_IF_ERROR(st.Run());
  return txn.Commit();
}

Result<bool> SqliteStore::IsPaused() {
  ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached("SELECT value FROM settings WHERE key='paused'"));
  ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
  return row && st.Text(0) == "1";
}


Result<std::vector<ImpossibleQueued>> SqliteStore::FindImpossibleQueued() {
  std::set<int64_t> ids;
  for (const char* sql : {kImpossibleQueuedSql, kQueuedWithOpenRunSql}) {
    ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached(sql));
    for (;;) {
      ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      ids.insert(st.Int(0));
    }
  }
  std::vector<ImpossibleQueued> out;
  for (int64_t id : ids) {
    ImpossibleQueued entry{id, std::nullopt};
    ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached(kOpenRunOfJobSql));
    st.Bind(1, id);
    ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) entry.open_run = ReadRun(st, 0);
    out.push_back(std::move(entry));
  }
  return out;
}

Status SqliteStore::RepairImpossibleQueued(int64_t job_id, std::optional<int64_t> open_run_id,
                                           RunOutcome outcome, const std::string& reason,
                                           int64_t now_ms) {
  Transaction txn(db_.get());
  ORCH_RETURN_IF_ERROR(txn.Begin());
  if (open_run_id) {
    ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached("UPDATE runs SET ended_at=?3, outcome=?4, reason=?5 "
                                               "WHERE id=?2 AND job_id=?1 AND ended_at IS NULL"));
    st.Bind(1, job_id).Bind(2, *open_run_id).Bind(3, now_ms).Bind(4, RunOutcomeName(outcome));
    st.Bind(5, reason);
    ORCH_RETURN_IF_ERROR(st.Run());
    if (db_->Changes() == 0) {
      return GuardMissed("run " + std::to_string(*open_run_id) + " is no longer open");
    }
  }
  // I1: ownership cleared in the statement that keeps the job queued.
  ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached("UPDATE jobs SET run_id=NULL, pid=NULL, "
                                             "started_at=NULL, updated_at=?2 "
                                             "WHERE id=?1 AND status='queued'"));
  st.Bind(1, job_id).Bind(2, now_ms);
  ORCH_RETURN_IF_ERROR(st.Run());
  if (db_->Changes() == 0) return GuardMissed("job " + std::to_string(job_id) + " left queued");
  return txn.Commit();
}

Status SqliteStore::ReattachOpenRun(int64_t job_id, int64_t run_id, int64_t now_ms) {
  Transaction txn(db_.get());
  ORCH_RETURN_IF_ERROR(txn.Begin());
  ORCH_ASSIGN_OR_RETURN(Job job, LoadJob(job_id));
  ORCH_ASSIGN_OR_RETURN(Run run, LoadRun(run_id));
  if (run.job_id != job_id || run.ended_at) {
    return GuardMissed("run " + std::to_string(run_id) + " is not an open run of job " +
                       std::to_string(job_id));
  }
  if (job.status != JobStatus::kQueued) {
    return GuardMissed("job " + std::to_string(job_id) + " left queued");
  }
  ORCH_ASSIGN_OR_RETURN(ClaimTransition t, TransitionOnReattach(StateOf(job), run.attempt));
  ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached("UPDATE jobs SET status=?3, run_id=?2, pid=?4, "
                                             "started_at=?5, attempts=?6, updated_at=?7 "
                                             "WHERE id=?1 AND status='queued'"));
  st.Bind(1, job_id).Bind(2, run_id).Bind(3, JobStatusName(t.to));
  st.Bind(4, run.identity.pid != 0 ? std::optional<int64_t>(run.identity.pid) : std::nullopt);
  st.Bind(5, run.started_at).Bind(6, t.attempts).Bind(7, now_ms);
  ORCH_RETURN_IF_ERROR(st.Run());
  if (db_->Changes() == 0) return GuardMissed("job " + std::to_string(job_id) + " left queued");
  return txn.Commit();
}

Result<std::vector<RunningEntry>> SqliteStore::ListRunning() {
  std::vector<RunningEntry> out;
  ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached(kListRunningSql));
  for (;;) {
    ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(RunningEntry{ReadJob(st, 0), ReadRun(st, kJobColCount)});
  }
  return out;
}

Result<std::vector<RunningBrief>> SqliteStore::ListRunningBrief() {
  std::vector<RunningBrief> out;
  ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached(kListRunningBriefSql));
  for (;;) {
    ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(RunningBrief{st.Int(0), st.Int(1), st.Text(2), st.OptInt(3).value_or(0),
                               st.OptText(4), st.Int(5), st.Int(6) != 0});
  }
  return out;
}

Result<JobPage> SqliteStore::ListJobs(const JobQuery& q, int64_t limit, int64_t max_bytes) {
  if (limit <= 0) return Status(Code::kInvalidArgument, "limit must be positive");
  JobPage page;
  ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached(ListJobsSql(q, ORCH_JOB_COLS, false)));
  int n = 2;
  st.Bind(1, q.IdBound()).Bind(2, limit);
  if (q.status) st.Bind(++n, JobStatusName(*q.status));
  if (!q.name_contains.empty()) st.Bind(++n, q.name_contains);
  if (q.serial_key) st.Bind(++n, *q.serial_key);
  int64_t bytes = 0;
  for (;;) {
    ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row || !AddToPage(page, ReadJob(st, 0), bytes, max_bytes)) break;
  }
  ClosePage(page, limit, bytes, max_bytes);
  return page;
}

Result<Job> SqliteStore::GetJob(int64_t job_id) { return LoadJob(job_id); }

Result<std::vector<Run>> SqliteStore::GetRuns(int64_t job_id) {
  std::vector<Run> out;
  ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached(kGetRunsSql));
  st.Bind(1, job_id);
  for (;;) {
    ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadRun(st, 0));
  }
  return out;
}

Result<std::optional<Run>> SqliteStore::GetRun(int64_t run_id) {
  auto r = LoadRun(run_id);
  if (r.ok()) return std::optional<Run>(std::move(r.value()));
  if (r.status().code() == Code::kNotFound) return std::optional<Run>();
  return r.status();
}

Result<std::vector<MinuteStats>> SqliteStore::Throughput(int64_t from_ms, int64_t to_ms) {
  std::vector<MinuteStats> started, ended;
  {
    ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached(kStartedPerMinuteSql));
    st.Bind(1, from_ms).Bind(2, to_ms);
    for (;;) {
      ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      MinuteStats m;
      m.minute = st.Int(0);
      m.started = st.Int(1);
      m.wait_ms_avg = st.OptDouble(2);
      m.wait_ms_max = st.OptInt(3);
      started.push_back(m);
    }
  }
  {
    ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached(kEndedPerMinuteSql));
    st.Bind(1, from_ms).Bind(2, to_ms);
    for (;;) {
      ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      MinuteStats m;
      m.minute = st.Int(0);
      m.finished = st.Int(1);
      m.succeeded = st.Int(2);
      ended.push_back(m);
    }
  }
  return MergeMinutes(std::move(started), ended);
}

Result<QueueCounts> SqliteStore::Counts() {
  QueueCounts c;
  {
    ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached(kCountsSql));
    for (;;) {
      ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      SetCount(c, st.Text(0), st.Int(1));
    }
  }
  ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached(kOldestQueuedSql));
  ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
  if (row) c.oldest_queued_created_at = st.OptInt(0);
  return c;
}

Result<std::optional<int64_t>> SqliteStore::NextNotBefore(int64_t now_ms) {
  ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached(kNextNotBeforeSql));
  st.Bind(1, now_ms);
  ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return std::optional<int64_t>();
  return st.OptInt(0);
}

// One host: the file lock (held by the daemon) already makes the node's
// incarnation the only one, and nothing rescues, so the row is taken as is
// and a lease never lapses.
Result<NodeInfo> SqliteStore::AcquireNode(const NodeClaim& claim) {
  int64_t now = WallMs();
  Transaction txn(db_.get());
  ORCH_RETURN_IF_ERROR(txn.Begin());
  ORCH_ASSIGN_OR_RETURN(
      Stmt st, db_->Cached("INSERT INTO nodes(node_id, incarnation, started_at, heartbeat_at, "
                           "lease_until, version) VALUES (?1, ?2, ?3, ?3, ?4, ?5) "
                           "ON CONFLICT(node_id) DO UPDATE SET incarnation=excluded.incarnation, "
                           "started_at=excluded.started_at, heartbeat_at=excluded.heartbeat_at, "
                           "lease_until=excluded.lease_until, version=excluded.version"));
  st.Bind(1, claim.node_id).Bind(2, claim.incarnation).Bind(3, now);
  st.Bind(4, now + claim.lease_ms).Bind(5, claim.version);
  ORCH_RETURN_IF_ERROR(st.Run());
  ORCH_RETURN_IF_ERROR(txn.Commit());
  return NodeInfo{claim.node_id, claim.incarnation, now, now, now + claim.lease_ms,
                  claim.version, now, 0};
}

Result<std::vector<int64_t>> SqliteStore::ContinueRuns(const std::string& incarnation,
                                                       const std::vector<int64_t>& run_ids) {
  Transaction txn(db_.get());
  ORCH_RETURN_IF_ERROR(txn.Begin());
  std::vector<int64_t> open;
  for (int64_t id : run_ids) {
    ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached("UPDATE runs SET incarnation=?2 "
                                               "WHERE id=?1 AND ended_at IS NULL"));
    st.Bind(1, id).Bind(2, incarnation);
    ORCH_RETURN_IF_ERROR(st.Run());
    if (db_->Changes() > 0) open.push_back(id);
  }
  ORCH_RETURN_IF_ERROR(txn.Commit());
  return open;
}

Result<LeaseRenewal> SqliteStore::RenewLease(const NodeClaim& claim) {
  int64_t now = WallMs();
  Transaction txn(db_.get());
  ORCH_RETURN_IF_ERROR(txn.Begin());
  ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached("UPDATE nodes SET heartbeat_at=?3, lease_until=?4 "
                                             "WHERE node_id=?1 AND incarnation=?2"));
  st.Bind(1, claim.node_id).Bind(2, claim.incarnation).Bind(3, now).Bind(4, now + claim.lease_ms);
  ORCH_RETURN_IF_ERROR(st.Run());
  if (db_->Changes() == 0) {
    return GuardMissed("node " + claim.node_id + " is no longer held by incarnation " +
                       claim.incarnation);
  }
  ORCH_RETURN_IF_ERROR(txn.Commit());
  return LeaseRenewal{now + claim.lease_ms, now, false};
}

Result<std::vector<NodeInfo>> SqliteStore::ListNodes() {
  int64_t now = WallMs();
  ORCH_ASSIGN_OR_RETURN(
      Stmt st, db_->Cached("SELECT n.node_id, n.incarnation, n.started_at, n.heartbeat_at, "
                           "n.lease_until, n.version, (SELECT COUNT(*) FROM jobs j "
                           "INDEXED BY jobs_running JOIN runs r ON r.id = j.run_id "
                           "WHERE j.status = 'running') FROM nodes n ORDER BY n.node_id"));
  std::vector<NodeInfo> out;
  for (;;) {
    ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(NodeInfo{st.Text(0), st.Text(1), st.Int(2), st.Int(3), st.Int(4), st.Text(5),
                           now, st.Int(6)});
  }
  return out;
}

Result<std::vector<RescuedRun>> SqliteStore::RescueExpiredRuns(const RescueRequest&) {
  return std::vector<RescuedRun>{};
}

Result<std::vector<Run>> SqliteStore::ListRescuedRuns(const std::string&, int64_t) {
  return std::vector<Run>{};
}

Status SqliteStore::ProbeWritable() {
  if (!path_.empty()) {
    struct stat st {};
    if (stat(path_.c_str(), &st) != 0 || st.st_dev != dev_ || st.st_ino != ino_) {
      return Status(Code::kIo, "database file " + path_ +
                                   " was removed or replaced while open; restart the daemon "
                                   "once it is back");
    }
  }
  // A committed write: a rolled-back one never reaches the disk, so it
  // would not notice a full or read-only filesystem.
  Transaction txn(db_.get());
  ORCH_RETURN_IF_ERROR(txn.Begin());
  ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached("INSERT INTO settings(key, value) VALUES "
                                             "('write_probe', '1') ON CONFLICT(key) DO UPDATE "
                                             "SET value = CAST(value AS INTEGER) + 1"));
  ORCH_RETURN_IF_ERROR(st.Run());
  return txn.Commit();
}

Status SqliteStore::InTransaction(const std::function<void()>& ops) { return db_->InGroup(ops); }

Status SqliteStore::InSnapshot(const std::function<void()>& ops) { return db_->InSnapshot(ops); }

Result<std::vector<std::string>> SqliteStore::IntegrityCheck() {
  std::vector<std::string> out;
  ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Prepare("PRAGMA integrity_check"));
  for (;;) {
    ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(st.Text(0));
  }
  return out;
}

Result<std::vector<Violation>> SqliteStore::CheckInvariants(const InvariantLimits& limits) {
  std::vector<Violation> out;
  auto collect = [&](const std::string& invariant, const std::string& sql) -> Status {
    ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Prepare(sql));
    for (;;) {
      ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) return Status::Ok();
      out.push_back(Violation{invariant, st.Int(0), st.Text(1)});
    }
  };
  // One snapshot for the whole report.
  ORCH_RETURN_IF_ERROR(db_->Exec("BEGIN"));
  struct EndRead {
    SqliteDb* db;
    ~EndRead() { sqlite3_exec(db->raw(), "COMMIT", nullptr, nullptr, nullptr); }
  } end_read{db_.get()};
  ORCH_RETURN_IF_ERROR(collect("I1", kInvariantI1Sql));
  ORCH_RETURN_IF_ERROR(collect("I2", kInvariantI2Sql));
  ORCH_RETURN_IF_ERROR(collect(
      "I3",
      "SELECT job_id, COUNT(*) || ' open runs: ' || group_concat(id, ',') FROM runs "
      "WHERE ended_at IS NULL GROUP BY job_id HAVING COUNT(*) > 1 ORDER BY job_id"));
  ORCH_RETURN_IF_ERROR(collect("I4", kInvariantI4Sql));
  if (limits.max_concurrency > 0) {
    ORCH_RETURN_IF_ERROR(collect(
        "I5", "SELECT 0, COUNT(*) || ' jobs running, max_concurrency is " +
                  std::to_string(limits.max_concurrency) +
                  "' FROM jobs WHERE status = 'running' HAVING COUNT(*) > " +
                  std::to_string(limits.max_concurrency)));
  }
  if (limits.serial_gate_enabled) {
    ORCH_RETURN_IF_ERROR(collect(
        "I6",
        "SELECT j.id, 'serial_key ' || quote(j.serial_key) || ' is held by running jobs ' || "
        "(SELECT group_concat(id, ',') FROM jobs WHERE status = 'running' "
        " AND serial_key = j.serial_key) FROM jobs j WHERE j.status = 'running' "
        "AND j.serial_key IN (SELECT serial_key FROM jobs WHERE status = 'running' "
        " AND serial_key IS NOT NULL GROUP BY serial_key HAVING COUNT(*) > 1) ORDER BY j.id"));
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> SqliteStore::HotQueriesForTest() {
  return {{"running_count", kRunningCountSql}, {"claim", kClaimSql},
          {"counts", kCountsSql},              {"oldest_queued", kOldestQueuedSql},
          {"sanitize_find", kImpossibleQueuedSql}, {"list_by_status", ListJobsSql({.status = JobStatus::kQueued}, ORCH_JOB_COLS, false)},
          {"list_all", ListJobsSql({}, ORCH_JOB_COLS, false)},
          {"list_newest_failed_by_name",
           ListJobsSql({.status = JobStatus::kFailed, .name_contains = "x", .newest_first = true},
                       ORCH_JOB_COLS, false)},
          {"list_by_key", ListJobsSql({.serial_key = "k"}, ORCH_JOB_COLS, false)},
          {"list_queued_by_key",
           ListJobsSql({.status = JobStatus::kQueued, .serial_key = "k", .newest_first = true},
                       ORCH_JOB_COLS, false)},            {"next_not_before", kNextNotBeforeSql},
          {"list_running", kListRunningSql},    {"list_running_brief", kListRunningBriefSql},
          {"get_job", kGetJobSql},              {"started_per_minute", kStartedPerMinuteSql},
          {"ended_per_minute", kEndedPerMinuteSql}};
}

Status SqliteStore::SetMaxPageCountForTest(int64_t pages) {
  return db_->Exec("PRAGMA max_page_count=" + std::to_string(pages));
}

}  // namespace orch
