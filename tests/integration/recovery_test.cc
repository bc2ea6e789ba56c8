// Crash and pid-reuse recovery against the real binary: kill -9, container
// restarts in fresh PID namespaces, an impostor holding the recorded pid.
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <gtest/gtest.h>

#include "integration/daemon_harness.h"

namespace orch {
namespace {

using nlohmann::json;
using test::Daemon;
using test::TempDir;
using test::WaitFor;

std::vector<pid_t> ReadPids(const std::string& path) {
  std::vector<pid_t> pids;
  std::ifstream in(path);
  for (pid_t p; in >> p;) pids.push_back(p);
  return pids;
}

bool Alive(pid_t pid) {
  // A test-side check on a pid it got from its own job: /proc/<pid>/stat
  // state other than zombie.
  std::string stat = test::ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (stat.empty()) return false;
  size_t close = stat.rfind(')');
  return close != std::string::npos && stat[close + 2] != 'Z';
}

// A job that writes its host-visible pid and only succeeds on its second run.
json SecondRunSucceeds(const std::string& pidfile) {
  std::string script = "echo $$ >> " + pidfile + "; [ $(wc -l < " + pidfile +
                       ") -ge 2 ] && exit 0; exec sleep 120";
  return {{"argv", {"sh", "-c", script}}};
}

constexpr const char* kOneAtATime =
    "[supervisor]\nmax_concurrency = 1\nbackoff_base_s = 0.05\nbackoff_max_s = 0.1\n";

TEST(Recovery, KilledDaemonsOrphanIsKilledAndTheJobRerunUnderRequeue) {
  TempDir dir;
  Daemon d(dir, kOneAtATime);
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string pids = dir.File("pids");
  int64_t id = d.Submit(SecondRunSucceeds(pids));
  ASSERT_TRUE(WaitFor([&] { return test::CountLines(pids) == 1; }));
  pid_t orphan = ReadPids(pids)[0];
  d.Kill9();
  ASSERT_TRUE(Alive(orphan)) << "the job outlives a kill -9 of the daemon";

  ASSERT_TRUE(d.Start()) << d.Log();
  ASSERT_TRUE(d.WaitStatus(id, "succeeded")) << d.Job(id).dump() << d.Log();
  EXPECT_TRUE(WaitFor([&] { return !Alive(orphan); })) << "orphan was killed";
  json j = d.Job(id);
  ASSERT_EQ(2u, j["runs"].size());
  EXPECT_EQ("interrupted", j["runs"][0]["outcome"]) << "the daemon's crash spends no attempt";
  EXPECT_EQ("orphan_killed", j["runs"][0]["reason"]);
  EXPECT_EQ(1, j["attempts"]);
  EXPECT_EQ(1u, d.Get("/queue").Json()["reaper"]["orphans_total"].get<uint64_t>());
  EXPECT_EQ(0, d.Stop());
}

// The row said queued (written by something else) while its run's process
// lived on: the I1 repair must check that process, not close the run blindly
// and start a second copy beside an untracked first one.
TEST(Recovery, QueuedRowWhoseOrphanLivesIsHandledByOrphanPolicyNotForgotten) {
  TempDir dir;
  Daemon d(dir, kOneAtATime);
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string pids = dir.File("pids");
  int64_t id = d.Submit(SecondRunSucceeds(pids));
  ASSERT_TRUE(WaitFor([&] { return test::CountLines(pids) == 1; }));
  pid_t orphan = ReadPids(pids)[0];
  d.Kill9();
  ASSERT_TRUE(Alive(orphan));
  // If an assertion below fails, the orphan's group must not outlive the test.
  struct KillGroupOnExit {
    pid_t leader;
    ~KillGroupOnExit() {
      if (Alive(leader)) kill(-leader, SIGKILL);
    }
  } cleanup{orphan};
  test::Sql(d.db_path(), "PRAGMA ignore_check_constraints=ON; UPDATE jobs SET status='queued' "
                         "WHERE id=" + std::to_string(id) + ";");
  ASSERT_EQ("queued\n", test::Sql(d.db_path(), "SELECT status FROM jobs WHERE id=" +
                                                   std::to_string(id) + ";"));

  ASSERT_TRUE(d.Start()) << d.Log();
  ASSERT_TRUE(d.WaitStatus(id, "succeeded")) << d.Job(id).dump() << d.Log();
  EXPECT_TRUE(WaitFor([&] { return !Alive(orphan); })) << "the first copy was left running";
  json j = d.Job(id);
  ASSERT_EQ(2u, j.at("runs").size()) << j.dump();
  EXPECT_EQ("interrupted", j["runs"][0].at("outcome")) << j.dump();
  EXPECT_EQ("orphan_killed", j["runs"][0].at("reason")) << j.dump();
  EXPECT_EQ(2u, test::CountLines(pids)) << "exactly one more run";
  EXPECT_EQ(1u, d.Get("/queue").Json().at("reaper").at("impossible_queued_total").get<uint64_t>());
  EXPECT_EQ(0, d.Stop());
}

TEST(Recovery, ASecondDaemonOnTheSameStoreIsRefused) {
  TempDir dir;
  Daemon first(dir);
  ASSERT_TRUE(first.Start()) << first.Log();
  int64_t id = first.Submit({{"argv", {"sleep", "30"}}});
  ASSERT_TRUE(first.WaitStatus(id, "running"));
  auto second = test::RunCommand({test::OrchestratorBinary(), "serve", "--config", first.config_path()});
  EXPECT_EQ(2, second.exit_code);
  EXPECT_NE(std::string::npos, second.err.find("already serves")) << second.err;
  EXPECT_EQ("running", first.Job(id)["status"]) << "the first daemon's run was not touched";
  EXPECT_EQ(0, first.Stop());
}

TEST(Recovery, KilledDaemonsOrphanIsWatchedToTheEndUnderAdopt) {
  TempDir dir;
  Daemon d(dir, std::string(kOneAtATime) + "orphan_policy = \"adopt\"\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string pids = dir.File("pids"), release = dir.File("release");
  int64_t id = d.Submit({{"argv", {"sh", "-c", "echo $$ >> " + pids + "; while [ ! -e " + release +
                                                    " ]; do sleep 0.05; done; exit 0"}}});
  ASSERT_TRUE(WaitFor([&] { return test::CountLines(pids) == 1; }));
  pid_t orphan = ReadPids(pids)[0];
  d.Kill9();
  ASSERT_TRUE(d.Start()) << d.Log();
  EXPECT_TRUE(Alive(orphan)) << "adopted, not killed";
  EXPECT_EQ("running", d.Job(id)["status"]);
  test::WriteFile(release, "");
  // Succeeded in the end either way; the runs history says how, without
  // catching a short window in between.
  ASSERT_TRUE(d.WaitStatus(id, "succeeded")) << d.Job(id).dump() << d.Log();
  json j = d.Job(id);
  const json& runs = j.at("runs");
  ASSERT_FALSE(runs.empty()) << j.dump();
  EXPECT_EQ(orphan, runs.at(0).at("pid").get<pid_t>()) << "the adopted run is the first one";
  // With PIDFD_INFO_EXIT (kernel 6.15+) the exit status is known once the
  // orphan's new parent has reaped it: one run, succeeded. On older kernels
  // that run is lost and a second run (which finds `release`) succeeds.
  struct utsname u;
  uname(&u);
  int major = 0, minor = 0;
  std::sscanf(u.release, "%d.%d", &major, &minor);
  bool exit_info = major > 6 || (major == 6 && minor >= 15);
  if (exit_info) {
    ASSERT_EQ(1u, runs.size()) << j.dump();
    EXPECT_EQ("succeeded", runs[0].at("outcome")) << j.dump();
    EXPECT_EQ("exit 0", runs[0].at("reason")) << j.dump();
    EXPECT_EQ(1, j.at("attempts"));
    EXPECT_EQ(1u, test::CountLines(pids)) << "the job ran once";
  } else {
    ASSERT_EQ(2u, runs.size()) << j.dump();
    EXPECT_EQ("lost", runs[0].at("outcome")) << j.dump();
    EXPECT_EQ("adopted_exit_unknown", runs[0].at("reason")) << j.dump();
    EXPECT_EQ("succeeded", runs[1].at("outcome")) << j.dump();
    EXPECT_EQ(2u, test::CountLines(pids));
  }
  // Never two live processes of one job: each run began after the one before ended.
  for (size_t i = 1; i < runs.size(); ++i) {
    EXPECT_LE(runs[i - 1].at("ended_at").get<std::string>(),
              runs[i].at("started_at").get<std::string>())
        << j.dump();
  }
  EXPECT_EQ(1u, d.Get("/queue").Json().at("reaper").at("orphans_total").get<uint64_t>());
}

// ORCH-126 end to end: a container restart puts an unrelated process on the
// recorded pid; the new daemon must not believe it, must not signal it, must
// rerun the job and keep the queue moving at max_concurrency = 1.
TEST(Orch126, ContainerRestartWithPidReuseRequeuesAndLeavesTheImpostorAlone) {
  TempDir dir;
  Daemon d(dir, kOneAtATime);
  const std::vector<std::string> ns = {"unshare", "--pid", "--fork", "--mount-proc",
                                       "--kill-child=SIGKILL"};
  ASSERT_TRUE(d.Start(ns)) << d.Log();
  std::string pids = dir.File("pids");
  int64_t id = d.Submit(SecondRunSucceeds(pids));
  ASSERT_TRUE(d.WaitStatus(id, "running"));
  ASSERT_TRUE(WaitFor([&] { return test::CountLines(pids) == 1; })) << "the first run has begun";
  int64_t recorded = d.Job(id)["pid"];
  d.Kill9();  // the whole namespace dies with its PID 1

  // A new "container": the recorded pid number is taken by an impostor first.
  std::string script = "echo " + std::to_string(recorded - 1) +
                       " > /proc/sys/kernel/ns_last_pid; sleep 1000.126 & exec \"$@\"";
  std::vector<std::string> wrapper = ns;
  wrapper.insert(wrapper.end(), {"sh", "-c", script, "sh"});
  ASSERT_TRUE(d.Start(wrapper)) << d.Log();
  pid_t impostor = test::FindInNamespace(static_cast<pid_t>(recorded), "sleep 1000.126");
  ASSERT_GT(impostor, 0) << "the impostor holds pid " << recorded << " in the new namespace";
  int impostor_fd = static_cast<int>(syscall(SYS_pidfd_open, impostor, 0));
  ASSERT_GE(impostor_fd, 0);

  ASSERT_TRUE(d.WaitStatus(id, "succeeded")) << d.Job(id).dump() << d.Log();
  json j = d.Job(id);
  EXPECT_EQ("lost", j["runs"][0]["outcome"]);
  EXPECT_EQ("start_time_mismatch", j["runs"][0]["reason"]);
  int64_t next = d.Submit({{"argv", {"true"}}});
  EXPECT_TRUE(d.WaitStatus(next, "succeeded")) << "the queue still moves at max_concurrency = 1";

  pollfd p{impostor_fd, POLLIN, 0};
  EXPECT_EQ(0, poll(&p, 1, 0)) << "the impostor was never signalled";
  close(impostor_fd);
  d.Kill9();
}

TEST(Pid1, DoubleForkedOrphansLeaveNoZombie) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start({"unshare", "--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL"}))
      << d.Log();
  std::string marker = dir.File("escaped");
  // The escapee starts its own session, so the group kill at the job's exit
  // misses it; it is reparented to the daemon (PID 1) and must be reaped.
  int64_t id = d.Submit({{"argv", {"sh", "-c", "setsid sh -c 'touch " + marker +
                                                   "; sleep 0.5' & while [ ! -e " + marker +
                                                   " ]; do sleep 0.01; done; exit 0"}}});
  ASSERT_TRUE(d.WaitStatus(id, "succeeded"));
  ASSERT_TRUE(WaitFor([&] { return access(marker.c_str(), F_OK) == 0; }));
  pid_t daemon_pid = d.DaemonPid();
  ASSERT_NE(daemon_pid, d.pid());
  EXPECT_TRUE(WaitFor([&] { return !test::HasChildren(daemon_pid); }, std::chrono::seconds(10)))
      << "the escaped grandchild was reaped by the daemon as PID 1";
  EXPECT_EQ(0, d.Stop());
}

TEST(Systemd, NotifySocketReceivesReadyWatchdogAndStopping) {
  TempDir dir;
  std::string sock_path = dir.File("notify.sock");
  int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, sock_path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(0, bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr));
  timeval tv{0, 100000};
  setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  Daemon d(dir, "", {"NOTIFY_SOCKET=" + sock_path, "WATCHDOG_USEC=200000"});
  ASSERT_TRUE(d.Start()) << d.Log();
  std::string seen;
  auto drain = [&] {
    char buf[512];
    ssize_t n;
    while ((n = recv(sock, buf, sizeof buf, 0)) > 0) seen.append(buf, n).append("\n");
  };
  EXPECT_TRUE(WaitFor([&] {
    drain();
    return seen.find("READY=1") != std::string::npos && seen.find("WATCHDOG=1") != std::string::npos;
  })) << seen;
  EXPECT_NE(std::string::npos, seen.find("STATUS="));
  EXPECT_EQ(0, d.Stop());
  drain();
  EXPECT_NE(std::string::npos, seen.find("STOPPING=1")) << seen;
  close(sock);
}

}  // namespace
}  // namespace orch
