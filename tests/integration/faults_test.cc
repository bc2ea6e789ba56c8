// Storage faults and kill points against the real daemon (reliability):
// a full disk, a database locked elsewhere, a read-only store, an
// unwritable log directory, and the daemon aborting at its worst moments.
#include <signal.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <gtest/gtest.h>

#include "integration/daemon_harness.h"

namespace orch {
namespace {

using nlohmann::json;
using test::Daemon;
using test::TempDir;
using test::Tmpfs;
using test::WaitFor;

std::string WithStore(const std::string& path) {
  return "[store]\npath = \"" + path + "\"\nbusy_timeout_ms = 200\n";
}

// Holds the store's write lock from the test process itself: its own
// connection with BEGIN IMMEDIATE, until Release() or destruction. Taken in
// milliseconds, so nothing waits for an interpreter to start.
class StoreLock {
 public:
  explicit StoreLock(const std::string& db) {
    if (sqlite3_open_v2(db.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      error_ = sqlite3_errmsg(db_);
      return;
    }
    sqlite3_busy_timeout(db_, 10000);  // the daemon may be writing right now
    held_ = Exec("BEGIN IMMEDIATE");
  }
  ~StoreLock() {
    (void)Release();
    sqlite3_close_v2(db_);
  }
  StoreLock(const StoreLock&) = delete;
  StoreLock& operator=(const StoreLock&) = delete;

  bool held() const { return held_; }
  const std::string& error() const { return error_; }
  // Rolls back (nothing was written) and so lets the lock go.
  bool Release() {
    if (!held_) return true;
    held_ = false;
    return Exec("ROLLBACK");
  }
  // The first column of the first row, read inside the locked transaction.
  std::string Text(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != nullptr) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    return out;
  }

 private:
  bool Exec(const char* sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
    error_ = err != nullptr ? err : "";
    sqlite3_free(err);
    return rc == SQLITE_OK;
  }

  sqlite3* db_ = nullptr;
  bool held_ = false;
  std::string error_;
};

size_t Occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(DiskFull, SubmitsGet503NothingAcknowledgedIsLostAndItRecoversBySelf) {
  TempDir dir;
  Tmpfs fs(dir.File("store"), "size=1m");
  if (!fs.ok()) GTEST_SKIP() << "cannot mount tmpfs here";
  Daemon d(dir, WithStore("store/q.db"));
  ASSERT_TRUE(d.Start()) << d.Log();

  int64_t runner = d.Submit({{"argv", {"sleep", "60"}}});
  ASSERT_TRUE(d.WaitStatus(runner, "running"));

  std::vector<int64_t> acknowledged;
  json spec = {{"argv", {"true"}}, {"env", {{"PAD", std::string(20000, 'p')}}}};
  ASSERT_EQ(200, d.Post("/queue/pause").status);
  test::HttpResult last;
  for (int i = 0; i < 400; ++i) {
    last = d.Post("/jobs", spec.dump());
    if (last.status == 201) {
      acknowledged.push_back(last.Json()["id"]);
      continue;
    }
    break;
  }
  ASSERT_EQ(503, last.status) << "the disk filled up within 400 submits: " << last.body;
  EXPECT_NE(std::string::npos, last.body.find("full")) << last.body;
  EXPECT_FALSE(acknowledged.empty());
  EXPECT_TRUE(WaitFor([&] { return d.Get("/readyz").status == 503; }));
  EXPECT_EQ(200, d.Get("/healthz").status);
  EXPECT_EQ("running", d.Job(runner)["status"]) << "running jobs are not killed";

  ASSERT_TRUE(fs.Remount("size=64m"));
  EXPECT_TRUE(WaitFor([&] { return d.Get("/readyz").status == 200; })) << "recovers by itself";
  EXPECT_EQ(201, d.Post("/jobs", spec.dump()).status);

  EXPECT_EQ(0, d.Stop());
  ASSERT_TRUE(d.Start()) << d.Log();
  for (int64_t id : acknowledged) EXPECT_EQ(200, d.Get("/jobs/" + std::to_string(id)).status) << id;
  EXPECT_EQ(0, d.Stop());
}

TEST(LockedDatabase, WritesGet503TicksCountErrorsAndItRecoversWhenTheLockGoes) {
  TempDir dir;
  Daemon d(dir, WithStore("q.db"));
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t before = d.Get("/queue").Json()["reaper"]["errors_total"];

  StoreLock lock(d.db_path());
  ASSERT_TRUE(lock.held()) << lock.error();

  auto submit = d.Post("/jobs", "{\"argv\":[\"true\"]}");
  EXPECT_EQ(503, submit.status) << submit.body;
  EXPECT_NE(std::string::npos, submit.body.find("locked")) << submit.body;
  EXPECT_EQ(503, d.Get("/readyz").status);
  EXPECT_EQ(200, d.Get("/healthz").status);
  EXPECT_TRUE(WaitFor([&] {
    return d.Get("/queue").Json()["reaper"]["errors_total"].get<int64_t>() > before;
  })) << "failing ticks are counted";
  ASSERT_TRUE(lock.Release()) << lock.error();
  EXPECT_TRUE(WaitFor([&] { return d.Get("/readyz").status == 200; }));
  int64_t id = d.Submit({{"argv", {"true"}}});
  EXPECT_TRUE(d.WaitStatus(id, "succeeded"));
  EXPECT_EQ(0, d.Stop());
}

TEST(LockedDatabase, AClaimThatFailedOnTheLockIsRetriedWhenItGoes) {
  TempDir dir;
  // The backoff only has to outlast taking a lock in this process (milliseconds).
  Daemon d(dir, WithStore("q.db") + "[supervisor]\nbackoff_base_s = 3.0\nbackoff_max_s = 3.0\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string marker = dir.File("first-run");
  // Exits 75 once: its retry becomes due while the store is locked.
  int64_t id = d.Submit({{"argv", {"sh", "-c", "[ -e " + marker + " ] && exit 0; touch " + marker +
                                                   "; exit 75"}}});
  ASSERT_GT(id, 0);
  ASSERT_TRUE(WaitFor([&] {
    json j = d.Job(id);
    return j.value("status", "") == "queued" && j.value("attempts", 0) == 1;
  })) << d.Job(id).dump();
  size_t failed_before = Occurrences(d.Log(), "claim failed");
  StoreLock lock(d.db_path());
  ASSERT_TRUE(lock.held()) << lock.error();
  ASSERT_EQ("queued", lock.Text("SELECT status FROM jobs WHERE id=" + std::to_string(id)))
      << "the lock was taken before the retry became due";
  // The daemon saw the lock: the due claim failed on it.
  ASSERT_TRUE(WaitFor([&] { return Occurrences(d.Log(), "claim failed") > failed_before; },
                      std::chrono::seconds(20)))
      << d.Log();
  EXPECT_EQ("queued", d.Job(id).at("status"));
  ASSERT_TRUE(lock.Release()) << lock.error();
  EXPECT_TRUE(d.WaitStatus(id, "succeeded", std::chrono::seconds(20))) << d.Job(id).dump();
  EXPECT_EQ(2u, d.Job(id).at("runs").size());
  EXPECT_EQ(0, d.Stop());
}

TEST(ReadOnlyStore, RefusedAtStartWithExitTwo) {
  TempDir dir;
  Daemon d(dir, WithStore("ro/q.db"));
  Tmpfs fs(dir.File("ro"), "size=8m");
  if (!fs.ok()) GTEST_SKIP() << "cannot mount tmpfs here";
  ASSERT_TRUE(d.Start()) << d.Log();
  EXPECT_EQ(0, d.Stop());
  ASSERT_TRUE(fs.Remount("size=8m", MS_RDONLY));
  auto r = test::RunCommand({test::OrchestratorBinary(), "serve", "--config", d.config_path()});
  EXPECT_EQ(2, r.exit_code);
  EXPECT_NE(std::string::npos, r.err.find("cannot open the store")) << r.err;
}

// libpq is loaded only for a PostgreSQL store: without it the daemon says
// which package is missing and exits, instead of waiting for a server.
TEST(MissingLibpq, APostgresStoreWithoutLibpqIsRefusedAtStartWithExitTwo) {
#ifndef ORCH_TEST_HOOKS
  GTEST_SKIP() << "ORCH_TEST_LIBPQ needs -DORCH_TEST_HOOKS=ON (scripts/test.sh sets it)";
#endif
  TempDir dir;
  std::ofstream(dir.File("orchestrator.toml"))
      << "[server]\nlisten = \"127.0.0.1:0\"\n"
      << "[store]\nbackend = \"postgres\"\nurl = \"postgresql:///orch?host=" << dir.path()
      << "\"\n";
  auto r = test::RunCommand(
      {test::OrchestratorBinary(), "serve", "--config", dir.File("orchestrator.toml")},
      {"ORCH_TEST_LIBPQ=libpq-not-installed.so.5"});
  EXPECT_EQ(2, r.exit_code) << r.err;
  EXPECT_NE(std::string::npos, r.err.find("cannot load libpq")) << r.err;
  EXPECT_NE(std::string::npos, r.err.find("libpq-not-installed.so.5")) << r.err;
  EXPECT_NE(std::string::npos, r.err.find("Debian package libpq5")) << r.err;
}

TEST(VanishedStore, DegradedButAlive) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  std::filesystem::rename(d.db_path(), dir.File("moved.db"));
  EXPECT_TRUE(WaitFor([&] { return d.Get("/readyz").status == 503; }));
  // /readyz is open to anyone: it says what is wrong but names no path; the
  // log has the details.
  std::string ready = d.Get("/readyz").body;
  EXPECT_NE(std::string::npos, ready.find("store not writable")) << ready;
  EXPECT_EQ(std::string::npos, ready.find(dir.path())) << ready;
  EXPECT_TRUE(WaitFor([&] { return d.Log().find("removed or replaced") != std::string::npos; }));
  EXPECT_EQ(200, d.Get("/healthz").status);
  std::filesystem::rename(dir.File("moved.db"), d.db_path());
  EXPECT_TRUE(WaitFor([&] { return d.Get("/readyz").status == 200; }));
  EXPECT_EQ(0, d.Stop());
}

// A log directory the host cannot write is the host's fault, not the job's:
// the job is requeued with its attempt kept, claiming backs off, and it runs
// once the fault is gone.
TEST(LogDirectory, NotWritableIsAHostFaultAndTheJobRunsWhenItIsGone) {
  TempDir dir;
  Tmpfs logs(dir.File("var/logs"), "size=1m");
  if (!logs.ok()) GTEST_SKIP() << "cannot mount tmpfs here";
  Daemon d(dir, "[supervisor]\nbackoff_base_s = 0.05\nbackoff_max_s = 0.2\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  ASSERT_TRUE(logs.Remount("size=1m", MS_RDONLY));
  int64_t id = d.Submit({{"argv", {"true"}}, {"max_attempts", 1}});
  ASSERT_GT(id, 0);
  json queue;
  ASSERT_TRUE(WaitFor([&] {
    queue = d.Get("/queue").Json();
    return queue["host_fault"]["consecutive"].get<int64_t>() >= 3;
  })) << queue.dump();
  EXPECT_NE(std::string::npos,
            queue.at("host_fault").at("last_error").get<std::string>().find("Read-only file system"))
      << queue.dump();
  json j = d.Job(id);
  EXPECT_NE("failed", j.at("status")) << j.dump();
  EXPECT_EQ("interrupted", j.at("runs").at(0).at("outcome")) << j.dump();
  EXPECT_EQ("host_fault", j.at("runs").at(0).at("reason")) << j.dump();
  EXPECT_NE(std::string::npos, j.at("error").get<std::string>().find("Read-only file system"))
      << j.dump();
  EXPECT_NE(std::string::npos, d.Get("/metrics").body.find("orchestrator_host_faults_total "));
  EXPECT_EQ(200, d.Get("/healthz").status);

  ASSERT_TRUE(logs.Remount("size=1m"));
  ASSERT_TRUE(d.WaitStatus(id, "succeeded")) << d.Job(id).dump();
  EXPECT_EQ(1, d.Job(id).at("attempts")) << "host faults must not spend attempts";
  EXPECT_EQ(0, d.Stop());
}

// The job user may start no process (RLIMIT_NPROC 0, as a systemd TasksMax or
// a ulimit would): every exec fails EAGAIN. That is the host's fault: none
// of 50 queued jobs may fail or spend an attempt, and all run once it is gone.
TEST(HostFault, FiftyJobsWithNoProcessesLeftForTheJobUserAllRunOnceItIsGone) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for run_as";
  TempDir dir;
  chmod(dir.path().c_str(), 0755);
  Daemon d(dir, "[supervisor]\nrun_as = \"nobody:nogroup\"\nmax_concurrency = 4\n"
                "backoff_base_s = 0.05\nbackoff_max_s = 0.2\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  // One process of the job user is alive: with a limit of 0, every further
  // exec as that user fails EAGAIN (the kernel lets the first one through).
  int64_t blocker = d.Submit({{"argv", {"sleep", "300"}}, {"cwd", "/"}});
  ASSERT_TRUE(d.WaitStatus(blocker, "running"));
  std::string pid = std::to_string(d.DaemonPid());
  // Only the soft limit moves: raising a hard one needs CAP_SYS_RESOURCE.
  auto hard = test::RunCommand(
      {"prlimit", "--pid", pid, "--nproc", "--raw", "--noheadings", "--output", "HARD"});
  ASSERT_EQ(0, hard.exit_code) << hard.err;
  std::string hard_limit = hard.out.substr(0, hard.out.find_first_of(" \n"));
  auto limited = test::RunCommand({"prlimit", "--pid", pid, "--nproc=0:"});
  ASSERT_EQ(0, limited.exit_code) << limited.err;
  std::vector<int64_t> ids;
  for (int i = 0; i < 50; ++i) {
    ids.push_back(d.Submit({{"argv", {"true"}}, {"max_attempts", 1}, {"cwd", "/"}}));
    ASSERT_GT(ids.back(), 0);
  }
  json queue;
  ASSERT_TRUE(WaitFor([&] {
    queue = d.Get("/queue").Json();
    return queue.at("host_fault").at("consecutive").get<int64_t>() >= 3;
  })) << queue.dump();
  EXPECT_NE(std::string::npos,
            queue["host_fault"].at("last_error").get<std::string>().find("Resource temporarily"))
      << queue.dump();
  EXPECT_EQ(0, queue.at("counts").at("failed").get<int64_t>()) << queue.dump();
  EXPECT_EQ(0, queue.at("counts").at("succeeded").get<int64_t>()) << queue.dump();

  auto lifted = test::RunCommand({"prlimit", "--pid", pid, "--nproc=" + hard_limit + ":"});
  ASSERT_EQ(0, lifted.exit_code) << lifted.err;
  EXPECT_EQ(202, d.Post("/jobs/" + std::to_string(blocker) + "/cancel").status);
  ASSERT_TRUE(WaitFor([&] {
    queue = d.Get("/queue").Json();
    return queue.at("counts").at("succeeded").get<int64_t>() == 50;
  }, std::chrono::seconds(60))) << queue.dump();
  EXPECT_EQ(0, queue.at("counts").at("failed").get<int64_t>());
  for (int64_t id : ids) EXPECT_EQ(1, d.Job(id).at("attempts")) << "job " << id;
  EXPECT_EQ(0, d.Stop());
}

// The daemon aborts at a kill point; a restart must find a correct state and
// finish the job, and a job whose pid was never recorded must never have run.
// The daemon aborts at a kill point; a restart must find a correct state and
// finish the job, and a job whose pid was never recorded must never have run.
// A run that never ran the job keeps its attempt (max_attempts = 1 proves it).
void KillPointRecovers(const std::string& point, size_t expected_runs_of_the_program,
                       const std::string& first_outcome, const std::string& first_reason,
                       int max_attempts) {
#ifndef ORCH_TEST_HOOKS
  GTEST_SKIP() << "kill points need -DORCH_TEST_HOOKS=ON (scripts/test.sh sets it)";
#endif
  TempDir dir;
  Daemon d(dir, "[supervisor]\nbackoff_base_s = 0.05\nbackoff_max_s = 0.1\n",
           {"ORCH_TEST_KILL_POINT=" + point});
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string ran = dir.File("ran");
  int64_t id = d.Submit({{"argv", {"sh", "-c", "echo $$ >> " + ran}}, {"max_attempts", max_attempts}});
  ASSERT_GT(id, 0);
  EXPECT_EQ(128 + SIGABRT, d.WaitExit(std::chrono::seconds(20))) << d.Log();
  d.SetEnv({});
  ASSERT_TRUE(d.Start()) << d.Log();
  ASSERT_TRUE(d.WaitStatus(id, "succeeded")) << d.Job(id).dump() << d.Log();
  EXPECT_EQ(expected_runs_of_the_program, test::CountLines(ran)) << point;
  json j = d.Job(id);
  ASSERT_EQ(2u, j.at("runs").size()) << j.dump();
  EXPECT_EQ(first_outcome, j.at("runs").at(0).at("outcome")) << j.dump();
  // "a|b": either reason.
  std::string reason = j.at("runs").at(0).at("reason");
  EXPECT_NE(std::string::npos, ("|" + first_reason + "|").find("|" + reason + "|")) << j.dump();
  EXPECT_EQ(0, d.Stop());
  auto check = test::RunCommand({test::OrchestratorBinary(), "db", "check", "--config", d.config_path()});
  EXPECT_EQ(0, check.exit_code) << check.out << check.err;
}

TEST(KillPoint, AfterClaimRecovers) {
  KillPointRecovers("after_claim", 1, "interrupted", "never_spawned", 1);
}
TEST(KillPoint, AfterSpawnBeforeThePidIsStampedNeverRanTheJob) {
  // The held child leaves on its own once its gate closes with the daemon,
  // nearly always before the restart looks; if it is still in its cgroup
  // then, the reason is spawn_not_recorded (SupervisorLoop.RecoveryKills...
  // covers that case deterministically). Either way the job ran once.
  KillPointRecovers("after_spawn", 1, "interrupted", "never_spawned|spawn_not_recorded", 1);
}
TEST(KillPoint, AfterExitBeforeTheRunIsClosedRecovers) {
  KillPointRecovers("after_exit", 2, "lost", "pid_gone", 2);
}

}  // namespace
}  // namespace orch
