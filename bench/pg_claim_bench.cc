// Claim latency on the PostgreSQL store with a large table (issue 14: p99
// under 5 ms over loopback with 1M rows). Fills the database at URL with
// ROWS jobs (all but BACKLOG of them finished, each with its run, as a queue
// that has run for a while), then times CLAIMS claim cycles (ClaimNext, then
// RecordSpawned and FinishRun as the daemon does) from NODES connections at
// once, each its own node.
//
//   pg_claim_bench URL [ROWS=1000000] [BACKLOG=20000] [CLAIMS=3000] [NODES=3]
//
// The URL's database must be empty (the bench creates the schema).
#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/postgres/pg_store.h"

namespace {

double NowUs() {
  using namespace std::chrono;
  return duration_cast<nanoseconds>(steady_clock::now().time_since_epoch()).count() / 1000.0;
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "pg_claim_bench: %s\n", what.c_str());
  std::exit(1);
}

void Exec(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    Die(sql.substr(0, 60) + ": " + PQresultErrorMessage(r));
  }
  PQclear(r);
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) Die("usage: pg_claim_bench URL [ROWS] [BACKLOG] [CLAIMS] [NODES]");
  const std::string url = argv[1];
  const int64_t rows = argc > 2 ? std::atoll(argv[2]) : 1000000;
  const int64_t backlog = argc > 3 ? std::atoll(argv[3]) : 20000;
  const int64_t claims = argc > 4 ? std::atoll(argv[4]) : 3000;
  const int nodes = argc > 5 ? std::atoi(argv[5]) : 3;

  orch::Config::Store cfg;
  cfg.backend = "postgres";
  cfg.url = url;
  {
    auto store = orch::PgStore::Open(cfg);
    if (!store.ok()) Die(store.status().ToString());
  }
  PGconn* raw = PQconnectdb(url.c_str());
  if (PQstatus(raw) != CONNECTION_OK) Die(PQerrorMessage(raw));
  double t0 = NowUs();
  const int64_t done = rows - backlog;
  // History: finished jobs, one closed run each; then the backlog.
  Exec(raw, "INSERT INTO jobs(id, argv, status, attempts, created_at, updated_at, started_at, "
            "finished_at, run_id, exit_code, outcome, not_before) "
            "SELECT g, '[\"/bin/true\"]', 'succeeded', 1, g, g, g, g + 5, g, 0, 'succeeded', g "
            "FROM generate_series(1, " + std::to_string(done) + ") g");
  Exec(raw, "INSERT INTO runs(id, job_id, attempt, incarnation, node_id, boot_id, pidns_ino, pid, "
            "start_time, started_at, ended_at, outcome, reason, exit_code, log_path) "
            "SELECT g, g, 1, 'old', 'n' || (g % 3), 'b', 1, g % 30000 + 2, g, g, g + 5, "
            "'succeeded', 'exit 0', 0, '/var/log/x' FROM generate_series(1, " +
            std::to_string(done) + ") g");
  Exec(raw, "INSERT INTO jobs(id, argv, status, created_at, updated_at, not_before) "
            "SELECT g, '[\"/bin/true\"]', 'queued', g, g, 0 FROM generate_series(" +
            std::to_string(done + 1) + ", " + std::to_string(rows) + ") g");
  Exec(raw, "SELECT setval(pg_get_serial_sequence('jobs', 'id'), " + std::to_string(rows) +
            "); SELECT setval(pg_get_serial_sequence('runs', 'id'), " + std::to_string(done) +
            ")");
  Exec(raw, "VACUUM ANALYZE");
  std::printf("filled %lld jobs (%lld queued) in %.1f s\n", static_cast<long long>(rows),
              static_cast<long long>(backlog), (NowUs() - t0) / 1e6);

  std::mutex mu;
  std::vector<double> claim_us, cycle_us;
  std::vector<std::thread> threads;
  const int64_t per_node = claims / nodes;
  double start = NowUs();
  for (int n = 0; n < nodes; ++n) {
    threads.emplace_back([&, n] {
      auto store = orch::PgStore::Open(cfg);
      if (!store.ok()) Die(store.status().ToString());
      std::vector<double> mine_claim, mine_cycle;
      orch::ClaimRequest req;
      req.max_concurrency = 1000;
      req.node_id = "bench-" + std::to_string(n);
      req.incarnation = req.node_id;
      for (int64_t i = 0; i < per_node; ++i) {
        req.now_ms = 1'900'000'000'000;
        double a = NowUs();
        auto c = (*store)->ClaimNext(req);
        double b = NowUs();
        if (!c.ok() || !c->has_value()) Die("claim: " + c.status().ToString());
        orch::ProcessIdentity id{"boot", 1, static_cast<int64_t>(1000 + i), 7, 0};
        if (auto s = (*store)->RecordSpawned((*c)->job.id, (*c)->run.id, id, "/x"); !s.ok()) {
          Die("record: " + s.ToString());
        }
        orch::RunEnd end;
        end.job_id = (*c)->job.id;
        end.run_id = (*c)->run.id;
        end.outcome = orch::RunOutcome::kSucceeded;
        end.reason = "exit 0";
        end.exit_code = 0;
        end.now_ms = req.now_ms;
        if (auto f = (*store)->FinishRun(end); !f.ok()) Die("finish: " + f.status().ToString());
        mine_claim.push_back(b - a);
        mine_cycle.push_back(NowUs() - a);
      }
      std::lock_guard<std::mutex> lock(mu);
      claim_us.insert(claim_us.end(), mine_claim.begin(), mine_claim.end());
      cycle_us.insert(cycle_us.end(), mine_cycle.begin(), mine_cycle.end());
    });
  }
  for (auto& t : threads) t.join();
  double secs = (NowUs() - start) / 1e6;
  std::printf("%zu claims from %d nodes at once in %.2f s (%.0f cycles/s)\n", claim_us.size(),
              nodes, secs, static_cast<double>(claim_us.size()) / secs);
  std::printf("claim (ClaimNext, committed): p50 %.2f ms  p99 %.2f ms  max %.2f ms\n",
              Percentile(claim_us, 0.5) / 1000, Percentile(claim_us, 0.99) / 1000,
              Percentile(claim_us, 1.0) / 1000);
  std::printf("cycle (claim + record + finish): p50 %.2f ms  p99 %.2f ms\n",
              Percentile(cycle_us, 0.5) / 1000, Percentile(cycle_us, 0.99) / 1000);
  PQfinish(raw);
  return 0;
}
