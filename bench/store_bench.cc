// Store benchmark (bench/README.md, "Store"): a database with 1,000,000 jobs
// (mostly terminal, 10,000 queued) and the hot paths timed against it.
//
//   store_bench [--db PATH] [--rows N] [--queued N] [--ops N] [--inline-checkpoint 0|1]
//
// --inline-checkpoint 1 opens the store with background_checkpoint_ms = 0
// (SQLite's automatic checkpoint inside the committing call), for comparison.
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "store/job_store.h"
#include "store/sqlite_store.h"

namespace {

using orch::ClaimRequest;
using orch::Config;
using orch::RunEnd;
using orch::RunOutcome;
using orch::SqliteStore;

double NowUs() {
  return std::chrono::duration<double, std::micro>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// CPU time of this thread: tells the store's own cost apart from time spent
// waiting for a core on a loaded machine.
double CpuUs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "store_bench: %s\n", what.c_str());
  std::exit(1);
}

void Check(const orch::Status& s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + s.ToString());
}

void RawExec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    Die("sql: " + std::string(err ? err : "?") + " in " + sql.substr(0, 80));
  }
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[i];
}

// Fills jobs with `rows` rows, `queued` of them queued and the rest terminal,
// plus one closed run per terminal job, in one raw transaction.
void BulkLoad(const std::string& path, int64_t rows, int64_t queued) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) Die("open " + path);
  RawExec(db, "PRAGMA synchronous=OFF; BEGIN");
  sqlite3_stmt* job = nullptr;
  sqlite3_stmt* run = nullptr;
  sqlite3_prepare_v2(db,
                     "INSERT INTO jobs(id, name, argv, env, cwd, status, priority, serial_key, "
                     "attempts, max_attempts, not_before, created_at, updated_at, started_at, "
                     "finished_at, run_id, exit_code, outcome) VALUES (?1, 'bench', "
                     "'[\"/bin/true\"]', '{}', '', ?2, ?3, ?4, ?5, 3, ?6, ?6, ?6, ?7, ?7, ?8, ?9, "
                     "?10)",
                     -1, &job, nullptr);
  sqlite3_prepare_v2(db,
                     "INSERT INTO runs(id, job_id, attempt, incarnation, boot_id, pid, start_time, "
                     "started_at, ended_at, outcome, reason, exit_code) VALUES (?1, ?1, 1, "
                     "'bench', 'boot', 1000, 5, ?2, ?2, ?3, ?4, ?5)",
                     -1, &run, nullptr);
  const char* terminal[] = {"succeeded", "succeeded", "succeeded", "failed", "cancelled"};
  const int64_t t0 = 1'700'000'000'000;
  for (int64_t id = 1; id <= rows; ++id) {
    bool is_queued = id > rows - queued;
    const char* status = is_queued ? "queued" : terminal[id % 5];
    sqlite3_bind_int64(job, 1, id);
    sqlite3_bind_text(job, 2, status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(job, 3, id % 3);
    if (id % 10 == 0) {
      std::string key = "key" + std::to_string(id % 100);
      sqlite3_bind_text(job, 4, key.c_str(), -1, SQLITE_TRANSIENT);
    } else {
      sqlite3_bind_null(job, 4);
    }
    sqlite3_bind_int64(job, 5, is_queued ? 0 : 1);
    sqlite3_bind_int64(job, 6, t0 + id);
    if (is_queued) {
      for (int c : {7, 8, 9, 10}) sqlite3_bind_null(job, c);
    } else {
      sqlite3_bind_int64(job, 7, t0 + id + 10);
      sqlite3_bind_int64(job, 8, id);
      sqlite3_bind_int64(job, 9, std::strcmp(status, "failed") == 0 ? 1 : 0);
      sqlite3_bind_text(job, 10, status, -1, SQLITE_STATIC);
      sqlite3_bind_int64(run, 1, id);
      sqlite3_bind_int64(run, 2, t0 + id + 10);
      sqlite3_bind_text(run, 3, status, -1, SQLITE_STATIC);
      sqlite3_bind_text(run, 4, "exit 0", -1, SQLITE_STATIC);
      sqlite3_bind_int64(run, 5, 0);
    }
    if (sqlite3_step(job) != SQLITE_DONE) Die(std::string("insert job: ") + sqlite3_errmsg(db));
    sqlite3_reset(job);
    if (!is_queued) {
      if (sqlite3_step(run) != SQLITE_DONE) Die(std::string("insert run: ") + sqlite3_errmsg(db));
      sqlite3_reset(run);
    }
  }
  sqlite3_finalize(job);
  sqlite3_finalize(run);
  RawExec(db, "COMMIT; ANALYZE; PRAGMA wal_checkpoint(TRUNCATE)");
  sqlite3_close(db);
}

void InjectViolations(const std::string& path, int n) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_busy_timeout(db, 5000);
  RawExec(db, "PRAGMA ignore_check_constraints=ON; UPDATE jobs SET run_id=id, pid=4242, "
              "started_at=1 WHERE id IN (SELECT id FROM jobs WHERE status='queued' LIMIT " +
                  std::to_string(n) + ")");
  sqlite3_close(db);
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = "/tmp/orch-store-bench.db";
  int64_t rows = 1'000'000, queued = 10'000, ops = 5'000;
  bool inline_checkpoint = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--db") path = argv[i + 1];
    else if (a == "--rows") rows = std::atoll(argv[i + 1]);
    else if (a == "--queued") queued = std::atoll(argv[i + 1]);
    else if (a == "--ops") ops = std::atoll(argv[i + 1]);
    else if (a == "--inline-checkpoint") inline_checkpoint = std::atoi(argv[i + 1]) != 0;
    else Die("unknown flag " + a);
  }
  for (const char* suffix : {"", "-wal", "-shm"}) unlink((path + suffix).c_str());

  Config::Store cfg;
  cfg.path = path;
  cfg.synchronous = "normal";
  {
    auto s = SqliteStore::Open(cfg);
    if (!s.ok()) Die(s.status().ToString());
  }
  double t = NowUs();
  BulkLoad(path, rows, queued);
  std::printf("bulk load: %lld rows (%lld queued) in %.1f s\n", static_cast<long long>(rows),
              static_cast<long long>(queued), (NowUs() - t) / 1e6);

  orch::SqliteOpenOptions options;
  if (inline_checkpoint) options.background_checkpoint_ms = 0;
  auto opened = SqliteStore::Open(cfg, options);
  if (!opened.ok()) Die(opened.status().ToString());
  auto& store = *opened;
  const int64_t now = 1'800'000'000'000;

  // Submit rate (each Submit is its own IMMEDIATE transaction + commit).
  t = NowUs();
  for (int64_t i = 0; i < ops; ++i) {
    orch::JobSpec spec;
    spec.argv = {"/bin/echo", std::to_string(i)};
    spec.priority = i % 3;
    auto r = store->Submit(spec, now);
    if (!r.ok()) Die("submit: " + r.status().ToString());
  }
  double submit_s = (NowUs() - t) / 1e6;
  std::printf("submit: %lld in %.2f s = %.0f/s\n", static_cast<long long>(ops), submit_s,
              static_cast<double>(ops) / submit_s);

  // claim + record_spawned + finish cycles, with claim latency on its own.
  std::vector<double> claim_us, claim_cpu_us, cycle_us;
  ClaimRequest req;
  req.max_concurrency = 1;
  req.serial_gate_enabled = true;
  req.incarnation = "bench";
  req.now_ms = now;
  t = NowUs();
  for (int64_t i = 0; i < ops; ++i) {
    double c0 = NowUs(), cpu0 = CpuUs();
    auto c = store->ClaimNext(req);
    double c1 = NowUs();
    claim_cpu_us.push_back(CpuUs() - cpu0);
    if (!c.ok()) Die("claim: " + c.status().ToString());
    if (!c->has_value()) Die("claim: nothing claimable");
    const auto& claimed = **c;
    orch::ProcessIdentity id{"boot", 4026531836u, 1000 + i, 12345, 0};
    Check(store->RecordSpawned(claimed.job.id, claimed.run.id, id, "/var/log/x.out"),
          "record_spawned");
    RunEnd e;
    e.job_id = claimed.job.id;
    e.run_id = claimed.run.id;
    e.outcome = RunOutcome::kSucceeded;
    e.reason = "exit 0";
    e.exit_code = 0;
    e.now_ms = now + 1;
    auto f = store->FinishRun(e);
    if (!f.ok()) Die("finish: " + f.status().ToString());
    claim_us.push_back(c1 - c0);
    cycle_us.push_back(NowUs() - c0);
  }
  double cycle_s = (NowUs() - t) / 1e6;
  std::printf("claim+record_spawned+finish: %lld in %.2f s = %.0f/s (cycle p50 %.0f us, p99 %.0f us)\n",
              static_cast<long long>(ops), cycle_s, static_cast<double>(ops) / cycle_s,
              Percentile(cycle_us, 0.5), Percentile(cycle_us, 0.99));
  std::printf("claim latency: p50 %.0f us, p99 %.0f us, max %.0f us\n",
              Percentile(claim_us, 0.5), Percentile(claim_us, 0.99),
              *std::max_element(claim_us.begin(), claim_us.end()));
  std::printf("claim cpu time: p50 %.0f us, p99 %.0f us\n", Percentile(claim_cpu_us, 0.5),
              Percentile(claim_cpu_us, 0.99));

  std::vector<double> counts_us;
  for (int i = 0; i < 1000; ++i) {
    double c0 = NowUs();
    auto c = store->Counts();
    counts_us.push_back(NowUs() - c0);
    if (!c.ok()) Die("counts: " + c.status().ToString());
  }
  std::printf("counts: p50 %.0f us, p99 %.0f us\n", Percentile(counts_us, 0.5),
              Percentile(counts_us, 0.99));

  // The injected open runs name pids that are not ours: judge them all dead.
  const orch::RunProcessCheck none_alive = [](const orch::Run&) -> orch::Result<bool> { return false; };
  std::vector<double> sweep_us;
  for (int i = 0; i < 100; ++i) {
    double c0 = NowUs();
    auto r = orch::SanitizeImpossibleQueued(*store, now, none_alive);
    sweep_us.push_back(NowUs() - c0);
    if (!r.ok() || !r->repaired.empty()) Die("sanitize (clean) failed");
  }
  std::printf("sanitize sweep, 0 violations: p50 %.0f us, p99 %.0f us\n",
              Percentile(sweep_us, 0.5), Percentile(sweep_us, 0.99));

  InjectViolations(path, 5);
  double s0 = NowUs();
  auto repaired = orch::SanitizeImpossibleQueued(*store, now, none_alive);
  double sweep5 = NowUs() - s0;
  if (!repaired.ok()) Die("sanitize: " + repaired.status().ToString());
  std::printf("sanitize sweep, %zu violations repaired: %.0f us\n", repaired->repaired.size(),
              sweep5);
  return 0;
}
