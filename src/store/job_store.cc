#include "store/job_store.h"

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
