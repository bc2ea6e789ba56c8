#include "store/db_tools.h"

#include <sqlite3.h>

#include <chrono>
#include <memory>

#include "store/postgres/pg_conn.h"
#include "store/postgres/pg_store.h"
#include "store/sqlite_db.h"
#include "store/sqlite_store.h"

namespace orch {
namespace {

Result<std::unique_ptr<JobStore>> OpenExisting(const Config::Store& config, std::ostream& err) {
  JobStoreOpenOptions options;
  options.create = false;
  options.background_maintenance = false;
  auto store = OpenJobStore(config, options);
  if (!store.ok()) {
    err << "cannot open " << StoreLocation(config) << ": " << store.status().ToString() << "\n";
  }
  return store;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Result<std::string> CheckStoreSchema(const Config::Store& config) {
  int64_t version = 0, supported = 0;
  if (config.backend == "postgres") {
    supported = PgStore::kSchemaVersion;
    PgConnOptions options;
    options.statement_timeout_ms = 5000;
    ORCH_ASSIGN_OR_RETURN(std::unique_ptr<PgConn> conn, PgConn::Connect(config.url, options));
    ORCH_ASSIGN_OR_RETURN(PgResult exists,
                          conn->Query("SELECT to_regclass('schema_version') IS NOT NULL"));
    if (exists.Bool(0, 0)) {
      ORCH_ASSIGN_OR_RETURN(PgResult v, conn->Query("SELECT version FROM schema_version"));
      if (v.rows() > 0) version = v.Int(0, 0);
    }
  } else {
    supported = SqliteStore::kSchemaVersion;
    ORCH_ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db,
                          SqliteDb::Open(config.path, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX));
    sqlite3_busy_timeout(db->raw(), static_cast<int>(config.busy_timeout_ms));
    ORCH_ASSIGN_OR_RETURN(Stmt st, db->Prepare("PRAGMA user_version"));
    ORCH_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row) version = st.Int(0);
  }
  std::string where = StoreLocation(config) + ": schema version " + std::to_string(version);
  if (version > supported) {
    return Status(Code::kConflict, where + " is newer than this binary supports (" +
                                       std::to_string(supported) + ")");
  }
  if (version < supported)
    return where + ", migrated to " + std::to_string(supported) + " at start";
  return where;
}

int RunDbCheck(const Config::Store& config, std::ostream& out, std::ostream& err,
               const InvariantLimits& limits) {
  auto store = OpenExisting(config, err);
  if (!store.ok()) return 2;
  bool clean = true;
  auto integrity = (*store)->IntegrityCheck();
  if (!integrity.ok()) {
    err << "integrity_check failed: " << integrity.status().ToString() << "\n";
    return 2;
  }
  for (const auto& line : *integrity) {
    out << "integrity_check: " << line << "\n";
    if (line != "ok") clean = false;
  }
  auto violations = (*store)->CheckInvariants(limits);
  if (!violations.ok()) {
    err << "invariant check failed: " << violations.status().ToString() << "\n";
    return 2;
  }
  for (const auto& v : *violations) {
    out << v.invariant << " job " << v.job_id << ": " << v.detail << "\n";
  }
  out << violations->size() << " invariant violation" << (violations->size() == 1 ? "" : "s")
      << "\n";
  if (!violations->empty()) clean = false;
  return clean ? 0 : 1;
}

int RunDbSanitize(const Config::Store& config, const std::string& node_id,
                  const RunProcessCheck& alive, std::ostream& out, std::ostream& err) {
  auto store = OpenExisting(config, err);
  if (!store.ok()) return 2;
  // On a shared queue only this node's runs can be checked here.
  std::function<bool(const Run&)> ours;
  if (config.backend == "postgres") {
    ours = [&node_id](const Run& run) { return run.node_id == node_id; };
  }
  auto report = SanitizeImpossibleQueued(**store, NowMs(), alive, ours);
  if (!report.ok()) {
    err << "sanitize failed: " << report.status().ToString() << "\n";
    return 2;
  }
  for (int64_t id : report->repaired) out << "repaired job " << id << " (queued row carried a run)\n";
  for (const Status& e : report->errors) err << "not repaired: " << e.ToString() << "\n";
  for (const auto& a : report->alive) {
    out << "left job " << a.job_id << ": its run " << a.open_run->id << " (pid "
        << a.open_run->identity.pid << ") is still alive; the daemon handles it at start\n";
  }
  out << report->repaired.size() << " job" << (report->repaired.size() == 1 ? "" : "s")
      << " repaired\n";
  if (!report->errors.empty()) return 2;
  return report->alive.empty() ? 0 : 1;
}

}  // namespace orch
