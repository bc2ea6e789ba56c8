// Offline database tools behind `orchestrator db check|sanitize` (SPEC §9).
// They open the store through OpenJobStore and use only the JobStore
// interface, whatever the backend; the daemon may or may not be running
// (with SQLite, WAL and busy_timeout make that safe). A missing store is
// never created.
#pragma once

#include <ostream>

#include "config/config.h"
#include "store/job_store.h"

namespace orch {

// Prints the store's integrity check (IntegrityCheck) and every invariant
// violation (I1..I4, and I5/I6 as `limits` says: the configured
// max_concurrency and serial gate). Returns 0 when the store is clean, 1
// when something is wrong, 2 when the database cannot be opened.
int RunDbCheck(const Config::Store& config, std::ostream& out, std::ostream& err,
               const InvariantLimits& limits = InvariantLimits{});

// Repairs I1 (queued rows carrying a run) after checking each open run's
// process with `alive`, printing each repaired job id and a total. Returns 0
// when everything was repaired, 1 when a job was left because its process
// lives (the daemon handles it under orphan_policy), 2 when the database
// cannot be opened or the repair fails. On PostgreSQL only the runs of
// `node_id` (this host's node) are checked; others are left to their node.
int RunDbSanitize(const Config::Store& config, const std::string& node_id,
                  const RunProcessCheck& alive, std::ostream& out, std::ostream& err);

// `serve --self-check` (SPEC §14): opens the store without writing to it
// and says whether this binary can use its schema (the same, or an older
// one it would migrate at start); the error says why not.
Result<std::string> CheckStoreSchema(const Config::Store& config);

}  // namespace orch
