#include "store/job_store.h"

#include <utility>

#include "store/sqlite_store.h"

namespace orch {

Result<std::unique_ptr<JobStore>> OpenJobStore(const Config::Store& config,
                                               const JobStoreOpenOptions& options) {
  // The backend is chosen here, and only here, from the config. SQLite is the
  // only one so far; the PostgreSQL backend of SPEC §11 joins it here.
  SqliteOpenOptions sqlite;
  sqlite.create = options.create;
  if (!options.background_maintenance) sqlite.background_checkpoint_ms = 0;
  auto store = SqliteStore::Open(config, sqlite);
  if (!store.ok()) return store.status();
  return std::unique_ptr<JobStore>(std::move(store.value()));
}

}  // namespace orch
