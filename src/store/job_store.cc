#include "store/job_store.h"

#include <map>

#include <utility>

#include "store/postgres/pg_store.h"
#include "store/sqlite_store.h"

namespace orch {

Result<std::unique_ptr<JobStore>> OpenJobStore(const Config::Store& config,
                                               const JobStoreOpenOptions& options) {
  // The backend is chosen here, and only here, from the config.
  if (config.backend == "postgres") {
    PgOpenOptions pg;
    pg.create = options.create;
    auto store = PgStore::Open(config, pg);
    if (!store.ok()) return store.status();
    return std::unique_ptr<JobStore>(std::move(store.value()));
  }
  SqliteOpenOptions sqlite;
  sqlite.create = options.create;
  if (!options.background_maintenance) sqlite.background_checkpoint_ms = 0;
  auto store = SqliteStore::Open(config, sqlite);
  if (!store.ok()) return store.status();
  return std::unique_ptr<JobStore>(std::move(store.value()));
}

const char* const kStartedPerMinuteSql =
    "SELECT r.started_at / 60000 * 60000 AS m, COUNT(*), "
    "AVG(CASE WHEN r.attempt = 1 THEN r.started_at - j.created_at END), "
    "MAX(CASE WHEN r.attempt = 1 THEN r.started_at - j.created_at END) "
    // CROSS JOIN: SQLite walks runs (by runs_started_at) and looks jobs up,
    // never the other way round; PostgreSQL plans it as an inner join.
    "FROM runs r CROSS JOIN jobs j "
    "WHERE j.id = r.job_id AND r.started_at >= $1 AND r.started_at < $2 GROUP BY 1 ORDER BY 1";
const char* const kEndedPerMinuteSql =
    "SELECT ended_at / 60000 * 60000 AS m, COUNT(*), "
    "SUM(CASE WHEN outcome = 'succeeded' THEN 1 ELSE 0 END) FROM runs "
    "WHERE ended_at >= $1 AND ended_at < $2 GROUP BY 1 ORDER BY 1";

std::vector<MinuteStats> MergeMinutes(std::vector<MinuteStats> started,
                                      const std::vector<MinuteStats>& ended) {
  std::map<int64_t, MinuteStats> by_minute;
  for (auto& m : started) by_minute[m.minute] = std::move(m);
  for (const auto& e : ended) {
    MinuteStats& m = by_minute[e.minute];
    m.minute = e.minute;
    m.finished = e.finished;
    m.succeeded = e.succeeded;
  }
  std::vector<MinuteStats> out;
  out.reserve(by_minute.size());
  for (auto& [minute, m] : by_minute) out.push_back(std::move(m));
  return out;
}

const char* const kInvariantI1Sql =
    "SELECT id, 'queued job carries' || "
    "CASE WHEN run_id IS NOT NULL THEN ' run_id=' || run_id ELSE '' END || "
    "CASE WHEN pid IS NOT NULL THEN ' pid=' || pid ELSE '' END || "
    "CASE WHEN started_at IS NOT NULL THEN ' started_at=' || started_at ELSE '' END "
    "FROM jobs WHERE status = 'queued' AND "
    "(run_id IS NOT NULL OR pid IS NOT NULL OR started_at IS NOT NULL) ORDER BY id";
const char* const kInvariantI2Sql =
    "SELECT j.id, CASE WHEN j.run_id IS NULL THEN 'running job has no run_id' "
    "WHEN r.id IS NULL THEN 'running job points at missing run ' || j.run_id "
    "WHEN r.job_id <> j.id THEN 'running job points at run ' || r.id || ' of job ' || r.job_id "
    "ELSE 'running job points at closed run ' || r.id END "
    "FROM jobs j LEFT JOIN runs r ON r.id = j.run_id WHERE j.status = 'running' AND "
    "(j.run_id IS NULL OR r.id IS NULL OR r.job_id <> j.id OR r.ended_at IS NOT NULL) "
    "ORDER BY j.id";
const char* const kInvariantI4Sql =
    "SELECT id, status || ' job has no finished_at' FROM jobs "
    "WHERE status IN ('succeeded','failed','cancelled') AND finished_at IS NULL "
    "UNION ALL "
    "SELECT j.id, j.status || ' job has open run ' || r.id FROM runs r "
    "JOIN jobs j ON j.id = r.job_id WHERE r.ended_at IS NULL "
    "AND j.status IN ('succeeded','failed','cancelled') ORDER BY 1";

Job JobAsSubmitted(const JobSpec& spec, int64_t id, int64_t now_ms) {
  Job job;
  job.id = id;
  job.name = spec.name;
  job.argv = spec.argv;
  job.env = spec.env;
  job.cwd = spec.cwd;
  job.status = JobStatus::kQueued;
  job.priority = spec.priority;
  job.serial_key = spec.serial_key;
  job.max_attempts = spec.max_attempts;
  job.timeout_s = spec.timeout_s;
  job.not_before = spec.not_before == 0 ? now_ms : spec.not_before;
  job.idempotency_key = spec.idempotency_key;
  job.created_at = job.updated_at = now_ms;
  job.memory_max = spec.memory_max;
  job.cpu_max = spec.cpu_max;
  job.pids_max = spec.pids_max;
  job.stall_timeout_s = spec.stall_timeout_s;
  return job;
}

bool AddToPage(JobPage& page, Job job, int64_t& bytes, int64_t max_bytes) {
  bytes += static_cast<int64_t>(job.name.size() + job.cwd.size());
  for (const auto& a : job.argv) bytes += static_cast<int64_t>(a.size());
  for (const auto& [k, v] : job.env) bytes += static_cast<int64_t>(k.size() + v.size());
  page.jobs.push_back(std::move(job));
  return bytes < max_bytes;
}

std::string ListJobsSql(const JobQuery& q, const char* cols, bool postgres) {
  int n = 2;
  auto param = [&](int i) { return (postgres ? "$" : "?") + std::to_string(i); };
  std::string sql = std::string("SELECT ") + cols + " FROM jobs j";
  // A key's jobs, or a status's, without walking the others.
  if (q.serial_key && !postgres) {
    sql += " INDEXED BY jobs_by_key";
  } else if (q.status && !postgres) {
    sql += " INDEXED BY jobs_status_id";
  }
  sql += " WHERE j.id " + std::string(q.newest_first ? "<" : ">") + " " + param(1);
  if (q.status) sql += " AND j.status = " + param(++n);
  if (!q.name_contains.empty()) {
    sql += postgres ? " AND strpos(j.name, " + param(++n) + ") > 0"
                    : " AND instr(j.name, " + param(++n) + ") > 0";
  }
  if (q.serial_key) sql += " AND j.serial_key = " + param(++n);
  sql += q.newest_first ? " ORDER BY j.id DESC" : " ORDER BY j.id";
  return sql + " LIMIT " + param(2);
}

void ClosePage(JobPage& page, int64_t limit, int64_t bytes, int64_t max_bytes) {
  if (!page.jobs.empty() &&
      (static_cast<int64_t>(page.jobs.size()) == limit || bytes >= max_bytes)) {
    page.next_cursor = page.jobs.back().id;
  }
}

void SetCount(QueueCounts& counts, const std::string& status, int64_t n) {
  JobStatus s;
  if (!ParseJobStatus(status, &s)) return;
  switch (s) {
    case JobStatus::kQueued: counts.queued = n; break;
    case JobStatus::kRunning: counts.running = n; break;
    case JobStatus::kSucceeded: counts.succeeded = n; break;
    case JobStatus::kFailed: counts.failed = n; break;
    case JobStatus::kCancelled: counts.cancelled = n; break;
  }
}

Result<SanitizeReport> SanitizeImpossibleQueued(JobStore& store, int64_t now_ms,
                                                const RunProcessCheck& alive,
                                                const std::function<bool(const Run& run)>& ours) {
  SanitizeReport report;
  auto found = store.FindImpossibleQueued();
  if (!found.ok()) return found.status();
  for (auto& entry : *found) {
    std::optional<int64_t> run_id;
    RunOutcome outcome = RunOutcome::kLost;
    std::string reason = "impossible_queued";
    if (entry.open_run && ours && !ours(*entry.open_run)) continue;
    if (entry.open_run) {
      run_id = entry.open_run->id;
      if (entry.open_run->identity.pid == 0) {
        // Held before exec until stamped: it never ran the job.
        outcome = RunOutcome::kInterrupted;
        reason = "never_spawned";
      } else {
        auto lives = alive(*entry.open_run);
        if (!lives.ok()) {
          report.errors.push_back(Status(lives.status().code(),
                                         "job " + std::to_string(entry.job_id) + ": checking run " +
                                             std::to_string(run_id.value()) + ": " +
                                             lives.status().message()));
          continue;
        }
        if (*lives) {
          report.alive.push_back(std::move(entry));
          continue;
        }
      }
    }
    Status s = store.RepairImpossibleQueued(entry.job_id, run_id, outcome, reason, now_ms);
    if (s.code() == Code::kGuardMissed) continue;
    if (!s.ok()) {
      report.errors.push_back(s);
      continue;
    }
    report.repaired.push_back(entry.job_id);
  }
  return report;
}

}  // namespace orch
