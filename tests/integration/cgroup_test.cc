// A run owns its whole tree (SPEC §12): real daemons, real jobs that leave
// processes behind in their own sessions, real cgroup v2. These machines
// mount cgroup2 without controllers at /sys/fs/cgroup/unified, so the
// daemons here run in mode `tracking` (each test says which mode it saw);
// limits and memory accounting are unit-tested against a fake tree
// (tests/supervisor/cgroup_test.cc).
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <thread>

#include <gtest/gtest.h>

#include "integration/daemon_harness.h"
#include "supervisor/pidfd.h"

namespace orch::test {
namespace {

using json = nlohmann::json;
using std::chrono::seconds;

json ShJob(const std::string& script, json extra = json::object()) {
  json spec = {{"argv", {"/bin/sh", "-c", script}}, {"max_attempts", 1}};
  spec.update(extra);
  return spec;
}

std::string Mode(const Daemon& d) { return d.Get("/queue").Json()["cgroup"].value("mode", ""); }

// Skips where cgroup v2 is not mounted; otherwise says which mode the
// daemon chose, for the record.
#define REQUIRE_CGROUPS(d)                                                          \
  do {                                                                              \
    if (Cgroup2Mount().empty()) GTEST_SKIP() << "no cgroup2 filesystem mounted here"; \
    std::string mode = Mode(d);                                                     \
    RecordProperty("cgroup_mode", mode);                                            \
    std::cout << "cgroup mode: " << mode << "\n";                                   \
    ASSERT_NE("none", mode) << d.Log();                                             \
  } while (0)

// A job whose shell starts `setsid sleep 300 &` (a process in its own
// session: the job's process group never reaches it) and writes its pid.
std::string Escape(const TempDir& dir) {
  return "setsid sleep 300 & echo $! > " + dir.File("esc.tmp") + " && mv " + dir.File("esc.tmp") +
         " " + dir.File("esc") + "; ";
}

// The escaped process, held by a pidfd so that pid reuse cannot fool the test.
Pidfd WatchEscaped(const TempDir& dir) {
  EXPECT_TRUE(WaitFor([&] { return std::filesystem::exists(dir.File("esc")); }, seconds(20)));
  std::string text = ReadFile(dir.File("esc"));
  pid_t pid = text.empty() ? 0 : static_cast<pid_t>(std::stol(text));
  auto fd = Pidfd::Open(pid);
  EXPECT_TRUE(fd.ok()) << "escaped process " << pid << " is already gone";
  return fd.ok() ? std::move(fd).value() : Pidfd();
}

bool Dead(const Pidfd& fd) { return !fd.valid() || fd.Exited(); }

// Run cgroups still under the daemon's root.
int RunCgroups(const Daemon& d) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(d.cgroup_root(), ec)) {
    if (e.is_directory() && e.path().filename().string().rfind("run-", 0) == 0) ++n;
  }
  return n;
}

std::string Wait(const TempDir& dir) {
  return "while [ ! -e " + dir.File("go") + " ]; do sleep 0.05; done; ";
}

TEST(Cgroups, WhatAJobLeftBehindIsDeadByTheTimeItsSuccessIsRecorded) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  REQUIRE_CGROUPS(d);
  int64_t id = d.Submit(ShJob(Escape(dir) + Wait(dir) + "exit 0"));
  ASSERT_TRUE(d.WaitStatus(id, "running"));
  Pidfd escaped = WatchEscaped(dir);
  ASSERT_FALSE(Dead(escaped));
  // Measured on the reaper's tick.
  json running;
  EXPECT_TRUE(WaitFor([&] {
    running = d.Get("/queue").Json()["running"][0];
    return running["cpu_s"].is_number() && running["idle_s"].is_number();
  })) << running;
  WriteFile(dir.File("go"), "");
  ASSERT_TRUE(d.WaitStatus(id, "succeeded")) << d.Log();
  // The end commits only after the run's cgroup is empty and removed.
  EXPECT_TRUE(Dead(escaped)) << "a process of the job outlived it";
  json run = d.Job(id)["runs"][0];
  EXPECT_EQ(d.cgroup_root() + "/run-" + std::to_string(run["id"].get<int64_t>()), run["cgroup"]);
  EXPECT_FALSE(std::filesystem::exists(run["cgroup"].get<std::string>()));
  EXPECT_TRUE(run["cpu_usec"].is_number_integer()) << run;
  EXPECT_TRUE(run["mem_peak_bytes"].is_null()) << "no memory controller here: not measured";
  EXPECT_EQ(0, RunCgroups(d));
}

TEST(Cgroups, CancelAndTimeoutKillTheWholeTree) {
  TempDir dir, cancel_dir, timeout_dir;
  Daemon d(dir, "[supervisor]\nmax_concurrency = 2\nkill_grace_s = 2\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  REQUIRE_CGROUPS(d);
  int64_t cancelled = d.Submit(ShJob(Escape(cancel_dir) + "sleep 300"));
  int64_t timed_out = d.Submit(ShJob(Escape(timeout_dir) + "sleep 300", {{"timeout_s", 2}}));
  ASSERT_TRUE(d.WaitStatus(cancelled, "running"));
  Pidfd escaped_c = WatchEscaped(cancel_dir);
  Pidfd escaped_t = WatchEscaped(timeout_dir);
  ASSERT_EQ(202, d.Post("/jobs/" + std::to_string(cancelled) + "/cancel").status);
  ASSERT_TRUE(d.WaitStatus(cancelled, "cancelled")) << d.Log();
  EXPECT_TRUE(Dead(escaped_c));
  ASSERT_TRUE(d.WaitStatus(timed_out, "failed")) << d.Log();
  EXPECT_EQ("timeout", d.Job(timed_out)["runs"][0]["outcome"]);
  EXPECT_TRUE(Dead(escaped_t));
  EXPECT_EQ(0, RunCgroups(d));
}

TEST(Cgroups, ADaemonStopLeavesNoProcessOfAnyJob) {
  TempDir dir, a, b;
  Daemon d(dir, "[supervisor]\nmax_concurrency = 2\nshutdown_grace_s = 5\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  REQUIRE_CGROUPS(d);
  int64_t first = d.Submit(ShJob(Escape(a) + "sleep 300"));
  int64_t second = d.Submit(ShJob(Escape(b) + "trap '' TERM; sleep 300"));
  ASSERT_TRUE(d.WaitStatus(first, "running"));
  ASSERT_TRUE(d.WaitStatus(second, "running"));
  Pidfd escaped_a = WatchEscaped(a), escaped_b = WatchEscaped(b);
  EXPECT_EQ(0, d.Stop());
  EXPECT_TRUE(Dead(escaped_a));
  EXPECT_TRUE(Dead(escaped_b));
  EXPECT_EQ(0, RunCgroups(d));
}

TEST(Cgroups, CpuTimeOfTheWholeRunIsRecorded) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  REQUIRE_CGROUPS(d);
  // One second of CPU exactly (RLIMIT_CPU), spent by a child of the shell:
  // the cgroup counts it, where the leader's own /proc times would not.
  int64_t id = d.Submit(ShJob("ulimit -t 1; awk 'BEGIN { while (1) {} }'; exit 0"));
  ASSERT_TRUE(d.WaitStatus(id, "succeeded", seconds(60))) << d.Log();
  json run = d.Job(id)["runs"][0];
  ASSERT_TRUE(run["cpu_usec"].is_number_integer()) << run;
  int64_t cpu = run["cpu_usec"];
  EXPECT_GE(cpu, 800000) << run;
  EXPECT_LE(cpu, 5000000) << run;
}

TEST(Cgroups, ALimitTheModeCannotApplyIsRefusedNamingTheFieldAndTheMode) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  REQUIRE_CGROUPS(d);
  if (Mode(d) == "full") GTEST_SKIP() << "this host delegates the controllers";
  for (const char* field : {"memory_max", "pids_max"}) {
    auto r = d.Post("/jobs", json{{"argv", {"true"}}, {field, 1 << 20}}.dump());
    EXPECT_EQ(400, r.status) << r.body;
    std::string message = r.Json()["error"].value("message", "");
    EXPECT_NE(std::string::npos, message.find(field)) << message;
    EXPECT_NE(std::string::npos, message.find("tracking")) << message;
  }
  auto cpu = d.Post("/jobs", json{{"argv", {"true"}}, {"cpu_max", 0.5}}.dump());
  EXPECT_EQ(400, cpu.status);
  EXPECT_EQ(0, d.Get("/queue").Json()["counts"]["queued"]) << "nothing was queued";
}

TEST(Cgroups, ModeOffIsProcessGroupsAndRefusesLimits) {
  TempDir dir;
  Daemon d(dir, "[cgroup]\nmode = \"off\"\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  EXPECT_EQ("none", Mode(d));
  EXPECT_NE(std::string::npos, d.Log().find("why=cgroup.mode = \"off\"")) << d.Log();
  auto r = d.Post("/jobs", json{{"argv", {"true"}}, {"memory_max", 1 << 20}}.dump());
  EXPECT_EQ(400, r.status);
  EXPECT_NE(std::string::npos, r.body.find("none")) << r.body;
  int64_t id = d.Submit(ShJob("exit 0"));
  ASSERT_TRUE(d.WaitStatus(id, "succeeded"));
  EXPECT_TRUE(d.Job(id)["runs"][0]["cgroup"].is_null());
  EXPECT_NE(std::string::npos, d.Get("/metrics").body.find("orchestrator_cgroup_mode{mode=\"none\"} 1"));
}

TEST(Cgroups, WithoutACgroup2MountTheModeIsNoneAndTheLogSaysWhy) {
  if (Cgroup2Mount().empty()) GTEST_SKIP() << "no cgroup2 filesystem mounted here";
  TempDir dir;
  Daemon d(dir, "", {"ORCH_CGROUP_ROOT="});  // the default root: own cgroup + /runs
  // A mount namespace of its own, where no cgroup2 is mounted.
  std::string unmount = "umount -l " + Cgroup2Mount() + " && exec \"$0\" \"$@\"";
  ASSERT_TRUE(d.Start({"unshare", "--mount", "--propagation", "private", "sh", "-c", unmount}))
      << d.Log();
  EXPECT_EQ("none", Mode(d));
  EXPECT_NE(std::string::npos, d.Log().find("no cgroup2 filesystem is mounted")) << d.Log();
  int64_t id = d.Submit(ShJob("exit 0"));
  EXPECT_TRUE(d.WaitStatus(id, "succeeded"));
}

TEST(Cgroups, AStalledRunIsStoppedAndRetriedAndBusyOrTalkativeOnesAreNot) {
  TempDir dir;
  Daemon d(dir, "[supervisor]\nmax_concurrency = 3\nkill_grace_s = 1\nbackoff_base_s = 0.1\n"
                "backoff_max_s = 0.2\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  REQUIRE_CGROUPS(d);
  json stall = {{"stall_timeout_s", 2}};
  int64_t hung = d.Submit(ShJob("sleep 600", {{"stall_timeout_s", 2}, {"max_attempts", 2}}));
  int64_t busy = d.Submit(ShJob(
      "end=$(( $(date +%s) + 5 )); while [ $(date +%s) -lt $end ]; do :; done", stall));
  int64_t talkative = d.Submit(ShJob("for i in 1 2 3 4 5; do echo $i; sleep 1; done", stall));
  ASSERT_TRUE(d.WaitStatus(hung, "running"));
  // idle_s grows while it does nothing.
  json queue;
  EXPECT_TRUE(WaitFor([&] {
    queue = d.Get("/queue").Json();
    for (const auto& r : queue["running"]) {
      if (r["id"] == hung && r["idle_s"].is_number() && r["idle_s"].get<double>() >= 1.0) return true;
    }
    return false;
  })) << queue;
  ASSERT_TRUE(d.WaitStatus(hung, "failed", seconds(30))) << d.Log();
  json runs = d.Job(hung)["runs"];
  ASSERT_EQ(2u, runs.size()) << "retried like a timeout";
  EXPECT_EQ("stalled", runs[0]["outcome"]);
  EXPECT_EQ("no_progress", runs[0]["reason"]);
  EXPECT_EQ("stalled", runs[1]["outcome"]);
  EXPECT_TRUE(d.WaitStatus(busy, "succeeded", seconds(30))) << d.Job(busy);
  EXPECT_TRUE(d.WaitStatus(talkative, "succeeded", seconds(30))) << d.Job(talkative);
  EXPECT_NE(std::string::npos, d.Get("/metrics").body.find("orchestrator_stalled_total 2"));
}

TEST(Cgroups, AJobThatTurnsStallDetectionOffIsLeftAloneUnderADaemonDefault) {
  TempDir dir;
  Daemon d(dir, "[supervisor]\nmax_concurrency = 2\nstall_timeout_s = 1\nkill_grace_s = 1\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  int64_t off = d.Submit(ShJob("sleep 3600", {{"stall_timeout_s", 0}}));
  int64_t by_default = d.Submit(ShJob("sleep 3600"));
  // The daemon's default stops the one that does not say...
  ASSERT_TRUE(d.WaitStatus(by_default, "failed", seconds(20))) << d.Log();
  EXPECT_EQ("stalled", d.Job(by_default)["runs"][0]["outcome"]);
  // ...while the other, as idle as long and longer, runs on.
  EXPECT_EQ("running", d.Job(off)["status"]);
  EXPECT_EQ(1u, d.Job(off)["runs"].size());
}

// A root job may move its own process out of its cgroup (systemd-run
// --scope does): its leader is still stopped, through its pidfd and group.
TEST(Cgroups, ALeaderThatLeftItsCgroupIsStillStoppedAndTheDaemonStillStops) {
  TempDir dir;
  Daemon d(dir, "[supervisor]\nmax_concurrency = 2\nkill_grace_s = 1\nshutdown_grace_s = 2\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  REQUIRE_CGROUPS(d);
  // Into the daemon's root of run cgroups: still under the test's tree.
  std::string leave = "echo $$ > " + d.cgroup_root() + "/cgroup.procs && exec sleep 300";
  int64_t timed = d.Submit(ShJob(leave, {{"timeout_s", 1}}));
  int64_t left = d.Submit(ShJob(leave));
  ASSERT_TRUE(d.WaitStatus(timed, "failed", seconds(20))) << d.Log();
  EXPECT_EQ("timeout", d.Job(timed)["runs"][0]["outcome"]);
  ASSERT_TRUE(d.WaitStatus(left, "running"));
  EXPECT_EQ(0, d.Stop(SIGTERM, seconds(20))) << d.Log();
}

// A job that makes cgroups of its own below its run's (a container tool,
// cgexec): what runs there dies with the run, and every cgroup goes.
TEST(Cgroups, CgroupsAJobMakesBelowItsOwnGoWithIt) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  REQUIRE_CGROUPS(d);
  std::string mine = "cg=" + Cgroup2Mount() + "$(sed -n 's/^0:://p' /proc/self/cgroup); " +
                     "mkdir $cg/inner && (echo $$ > $cg/inner/cgroup.procs; " + Escape(dir) +
                     "); " + Wait(dir) + "exit 0";
  int64_t id = d.Submit(ShJob(mine));
  ASSERT_TRUE(d.WaitStatus(id, "running"));
  Pidfd escaped = WatchEscaped(dir);
  WriteFile(dir.File("go"), "");
  ASSERT_TRUE(d.WaitStatus(id, "succeeded")) << d.Log();
  EXPECT_TRUE(Dead(escaped));
  EXPECT_TRUE(WaitFor([&] { return RunCgroups(d) == 0; })) << d.Log();
}

// kill -9 of the daemon while a job with an escaped child runs, then a
// restart: with orphan_policy requeue the whole tree goes and the job runs
// again; with adopt the tree is watched until its leader ends, then killed.
TEST(Cgroups, AfterACrashRequeueKillsTheOrphansWholeTree) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  REQUIRE_CGROUPS(d);
  // The rerun (the killed run gives its attempt back) finds the marker.
  int64_t id = d.Submit(ShJob("[ -e " + dir.File("ran") + " ] && exit 0; touch " + dir.File("ran") +
                              "; " + Escape(dir) + "sleep 300"));
  ASSERT_TRUE(d.WaitStatus(id, "running"));
  Pidfd escaped = WatchEscaped(dir);
  d.Kill9();
  ASSERT_FALSE(Dead(escaped)) << "its cgroup outlives the daemon";
  ASSERT_TRUE(d.Start()) << d.Log();
  ASSERT_TRUE(d.WaitStatus(id, "succeeded")) << d.Log();
  EXPECT_TRUE(Dead(escaped));
  json runs = d.Job(id)["runs"];
  ASSERT_EQ(2u, runs.size());
  EXPECT_EQ("orphan_killed", runs[0]["reason"]);
  EXPECT_TRUE(WaitFor([&] { return RunCgroups(d) == 0; })) << "no cgroup directory left";
}

TEST(Cgroups, AfterACrashAnAdoptedOrphansTreeIsWatchedThenKilledWithIt) {
  TempDir dir;
  Daemon d(dir, "[supervisor]\norphan_policy = \"adopt\"\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  REQUIRE_CGROUPS(d);
  int64_t id = d.Submit(ShJob(Escape(dir) + Wait(dir) + "exit 0"));
  ASSERT_TRUE(d.WaitStatus(id, "running"));
  Pidfd escaped = WatchEscaped(dir);
  d.Kill9();
  ASSERT_TRUE(d.Start()) << d.Log();
  ASSERT_NE(std::string::npos, d.Log().find("adopting orphan")) << d.Log();
  EXPECT_FALSE(Dead(escaped)) << "adopted, not killed";
  EXPECT_EQ("running", d.Job(id)["status"]);
  WriteFile(dir.File("go"), "");
  ASSERT_TRUE(WaitFor([&] { return d.Job(id)["status"] != "running"; }, seconds(20))) << d.Log();
  EXPECT_TRUE(Dead(escaped));
  json runs = d.Job(id)["runs"];
  ASSERT_EQ(1u, runs.size());
  EXPECT_EQ(d.cgroup_root() + "/run-" + std::to_string(runs[0]["id"].get<int64_t>()),
            runs[0]["cgroup"]);
  EXPECT_EQ(0, RunCgroups(d));
}

TEST(Cgroups, TheCgroupOfARunThatEndedWhileTheDaemonWasDownIsKilledAndRemoved) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  REQUIRE_CGROUPS(d);
  int64_t id = d.Submit(ShJob(Escape(dir) + Wait(dir) + "exit 0", {{"max_attempts", 2}}));
  ASSERT_TRUE(d.WaitStatus(id, "running"));
  Pidfd escaped = WatchEscaped(dir);
  int64_t leader = d.Job(id)["pid"];
  auto leader_fd = Pidfd::Open(static_cast<pid_t>(leader));
  ASSERT_TRUE(leader_fd.ok());
  d.Kill9();
  WriteFile(dir.File("go"), "");  // the leader ends while nobody watches
  ASSERT_TRUE(WaitFor([&] { return leader_fd->Exited(); }));
  ASSERT_FALSE(Dead(escaped));
  ASSERT_TRUE(d.Start()) << d.Log();
  EXPECT_TRUE(WaitFor([&] { return Dead(escaped); })) << d.Log();
  // Its cgroup may be killed before the run's end is committed.
  EXPECT_TRUE(WaitFor([&] { return d.Job(id)["runs"][0]["outcome"] == "lost"; }))
      << d.Job(id).dump();
  EXPECT_TRUE(WaitFor([&] { return RunCgroups(d) == 0; })) << d.Log();
}

}  // namespace
}  // namespace orch::test
