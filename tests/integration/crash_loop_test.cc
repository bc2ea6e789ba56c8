// Crash loops: the daemon is kill -9'ed at random moments (seeded, the seed
// printed) while short jobs run, then restarted; at the end every job has
// succeeded, no job ever ran twice at once, and the store is consistent.
//
// Release check with 100 kills:
//   ORCH_CRASH_KILLS=100 build/tests/integration_tests --gtest_filter='CrashLoop.*'
#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <gtest/gtest.h>
#include <random>
#include <thread>

#include "integration/daemon_harness.h"

namespace orch {
namespace {

using nlohmann::json;
using test::Daemon;
using test::TempDir;
using test::WaitFor;

constexpr int kJobs = 60;

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::atoi(v) : fallback;
}

// Each job holds a per-job lock while it works: a second concurrent run of
// the same job fails flock -n and leaves a mark.
json GuardedJob(const TempDir& dir, int i) {
  std::string lock = dir.File("locks/" + std::to_string(i));
  std::string script = "flock -n -E 99 " + lock + " sh -c 'sleep 0.$(( $$ % 3 + 1 ))' || { echo " +
                       std::to_string(i) + " >> " + dir.File("duplicates") + "; exit 99; }";
  return {{"argv", {"sh", "-c", script}}, {"max_attempts", 50}};
}

void ExpectConsistentStore(const std::string& db) {
  EXPECT_EQ("ok\n", test::Sql(db, "PRAGMA integrity_check"));
  EXPECT_EQ("0\n", test::Sql(db, "SELECT COUNT(*) FROM jobs WHERE status='queued' AND "
                                 "(run_id IS NOT NULL OR pid IS NOT NULL OR started_at IS NOT NULL)"))
      << "no queued row breaks I1";
  EXPECT_EQ("", test::Sql(db, "SELECT job_id FROM runs WHERE ended_at IS NULL GROUP BY job_id "
                              "HAVING COUNT(*) > 1"))
      << "no job has two open runs";
  EXPECT_EQ(std::to_string(kJobs) + "\n",
            test::Sql(db, "SELECT COUNT(*) FROM jobs WHERE status='succeeded'"));
}

void RunCrashLoop(const std::vector<std::string>& wrapper, bool impostors) {
  unsigned seed = static_cast<unsigned>(EnvInt("ORCH_CRASH_SEED", static_cast<int>(time(nullptr))));
  int kills = EnvInt("ORCH_CRASH_KILLS", 8);
  std::printf("crash loop: seed %u, %d kills (ORCH_CRASH_SEED=%u to replay)\n", seed, kills, seed);
  std::mt19937 rng(seed);
  TempDir dir;
  std::filesystem::create_directories(dir.File("locks"));
  Daemon d(dir, "[supervisor]\nmax_concurrency = 2\nbackoff_base_s = 0.02\nbackoff_max_s = 0.1\n");
  ASSERT_TRUE(d.Start(wrapper)) << d.Log();
  for (int i = 0; i < kJobs; ++i) ASSERT_GT(d.Submit(GuardedJob(dir, i)), 0);

  std::vector<int> impostor_fds;
  for (int k = 0; k < kills; ++k) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 400));
    // Pids of running jobs as recorded: where the impostors go next round.
    std::string recorded = test::Sql(d.db_path(), "SELECT pid FROM jobs WHERE status='running' AND pid IS NOT NULL LIMIT 1");
    for (int fd : impostor_fds) {
      pollfd p{fd, POLLIN, 0};
      EXPECT_EQ(0, poll(&p, 1, 0)) << "an impostor was signalled (seed " << seed << ")";
      close(fd);
    }
    impostor_fds.clear();
    d.Kill9();
    std::vector<std::string> w = wrapper;
    if (impostors && !recorded.empty()) {
      int pid = std::stoi(recorded);
      std::string script = "echo " + std::to_string(pid - 1) +
                           " > /proc/sys/kernel/ns_last_pid; sleep 1000.7 & exec \"$@\"";
      w.insert(w.end(), {"sh", "-c", script, "sh"});
    }
    ASSERT_TRUE(d.Start(w)) << "restart " << k << " (seed " << seed << ")\n" << d.Log();
    if (impostors && !recorded.empty()) {
      pid_t host = test::FindInNamespace(std::stoi(recorded), "sleep 1000.7");
      ASSERT_GT(host, 0) << "impostor on pid " << recorded;
      impostor_fds.push_back(static_cast<int>(syscall(SYS_pidfd_open, host, 0)));
    }
  }
  for (int fd : impostor_fds) {
    pollfd p{fd, POLLIN, 0};
    EXPECT_EQ(0, poll(&p, 1, 0)) << "an impostor was signalled (seed " << seed << ")";
    close(fd);
  }
  ASSERT_TRUE(WaitFor([&] {
    return d.Get("/queue").Json()["counts"]["succeeded"] == kJobs;
  }, std::chrono::seconds(120))) << "seed " << seed << "\n" << d.Get("/queue").body;
  EXPECT_EQ("", test::ReadFile(dir.File("duplicates"))) << "seed " << seed;
  EXPECT_EQ(0, d.Stop()) << "seed " << seed;
  ExpectConsistentStore(d.db_path());
  auto check = test::RunCommand({test::OrchestratorBinary(), "db", "check", "--config", d.config_path()});
  EXPECT_EQ(0, check.exit_code) << check.out << check.err;
}

TEST(CrashLoop, KillNineAtRandomMomentsLosesNothingAndNeverRunsAJobTwiceAtOnce) {
  RunCrashLoop({}, false);
}

TEST(CrashLoop, ContainerRestartsWithPidsForcedOntoImpostors) {
  RunCrashLoop({"unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL"}, true);
}

}  // namespace
}  // namespace orch
