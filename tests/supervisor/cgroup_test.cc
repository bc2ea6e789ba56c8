// The cgroup layer (SPEC §12): parsing, the files of a run's cgroup against a
// fake tree of plain files (these machines have no memory or pids
// controller on cgroup v2), and the real hierarchy where it is mounted.
#include "supervisor/cgroup.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "supervisor/containment.h"
#include "supervisor/pidfd.h"
#include "support/test_util.h"

namespace orch {
namespace {

using test::ReadFile;
using test::TempDir;
using test::WriteFile;

template <typename T>
T Or(const Result<T>& r, T fallback) {
  return r.ok() ? *r : fallback;
}

TEST(CgroupParse, FindsTheCgroup2MountOfAHybridHost) {
  const char* mountinfo =
      "25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n"
      "33 25 0:28 / /sys/fs/cgroup ro shared:9 - tmpfs tmpfs ro,mode=755\n"
      "34 33 0:29 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw\n"
      "35 33 0:30 / /sys/fs/cgroup/pids rw shared:11 - cgroup cgroup rw,pids\n";
  auto mount = FindCgroup2Mount(mountinfo);
  ASSERT_TRUE(mount);
  EXPECT_EQ("/sys/fs/cgroup/unified", mount->point);
  EXPECT_EQ("/sys/fs/cgroup/unified/a/b", mount->DirOf("/a/b").value_or(""));
  EXPECT_EQ("/sys/fs/cgroup/unified", mount->DirOf("/").value_or(""));
}

TEST(CgroupParse, ABindMountedSubtreeMapsTheDaemonsCgroupIntoIt) {
  // A container without its own cgroup namespace, given its own subtree.
  const char* mountinfo =
      "50 40 0:29 /docker/abc /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
  auto mount = FindCgroup2Mount(mountinfo);
  ASSERT_TRUE(mount);
  EXPECT_EQ("/docker/abc", mount->root);
  EXPECT_EQ("/sys/fs/cgroup/init", mount->DirOf("/docker/abc/init").value_or(""));
  EXPECT_EQ("/sys/fs/cgroup", mount->DirOf("/docker/abc").value_or(""));
  EXPECT_FALSE(mount->DirOf("/docker/abcd"));
  EXPECT_FALSE(mount->DirOf("/system.slice"));
}

TEST(CgroupParse, UnescapesTheMountPointAndSkipsOptionalFields) {
  const char* mountinfo =
      "40 1 0:40 / /mnt/my\\040cgroups rw shared:1 master:2 - cgroup2 none rw,nsdelegate\n";
  auto mount = FindCgroup2Mount(mountinfo);
  ASSERT_TRUE(mount);
  EXPECT_EQ("/mnt/my cgroups", mount->point);
}

TEST(CgroupParse, NoCgroup2MountIsNone) {
  EXPECT_FALSE(FindCgroup2Mount("35 33 0:30 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"));
  EXPECT_FALSE(FindCgroup2Mount(""));
}

TEST(CgroupParse, OwnPathIsTheUnifiedLine) {
  EXPECT_EQ("/system.slice/orchestrator.service",
            OwnCgroup2Path("4:memory:/x\n0::/system.slice/orchestrator.service\n").value_or(""));
  EXPECT_EQ("/", OwnCgroup2Path("0::/\n").value_or(""));
  EXPECT_FALSE(OwnCgroup2Path("4:memory:/x\n1:name=systemd:/\n"));
}

// A directory of plain files standing for a run's cgroup.
class FakeCgroup : public ::testing::Test {
 protected:
  int fd() {
    if (!fd_.valid()) fd_ = UniqueFd(open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    return fd_.get();
  }
  void File(const std::string& name, const std::string& text) { WriteFile(dir_.File(name), text); }
  TempDir dir_;
  UniqueFd fd_;
};

TEST_F(FakeCgroup, UsageComesFromTheKernelsFiles) {
  File("cpu.stat", "usage_usec 523417\nuser_usec 500000\nsystem_usec 23417\n");
  File("memory.peak", "73400320\n");
  File("memory.current", "1048576\n");
  // oom counts every time the limit was hit; oom_kill the processes killed.
  File("memory.events", "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n");
  CgroupUsage u = ReadCgroupUsage(fd());
  EXPECT_EQ(523417, u.cpu_usec.value_or(-1));
  EXPECT_EQ(73400320, u.mem_peak_bytes.value_or(-1));
  EXPECT_EQ(1048576, u.mem_bytes.value_or(-1));
  EXPECT_EQ(2, u.oom_kills.value_or(-1));
}

TEST_F(FakeCgroup, WhatTheKernelDoesNotGiveStaysUnset) {
  File("cpu.stat", "usage_usec 10\n");
  CgroupUsage u = ReadCgroupUsage(fd());
  EXPECT_EQ(10, u.cpu_usec.value_or(-1));
  EXPECT_FALSE(u.mem_peak_bytes);
  EXPECT_FALSE(u.mem_bytes);
  EXPECT_FALSE(u.oom_kills);
}

TEST_F(FakeCgroup, LimitsAreWrittenInTheKernelsFormat) {
  for (const char* f : {"memory.max", "cpu.max", "pids.max"}) File(f, "");
  ASSERT_TRUE(WriteCgroupLimits(fd(), {int64_t{268435456}, 1.5, int64_t{64}}).ok());
  EXPECT_EQ("268435456", ReadFile(dir_.File("memory.max")));
  EXPECT_EQ("150000 100000", ReadFile(dir_.File("cpu.max")));
  EXPECT_EQ("64", ReadFile(dir_.File("pids.max")));
}

TEST_F(FakeCgroup, OnlyTheLimitsAskedForAreWritten) {
  File("pids.max", "");
  ASSERT_TRUE(WriteCgroupLimits(fd(), {std::nullopt, std::nullopt, int64_t{5}}).ok());
  EXPECT_EQ("5", ReadFile(dir_.File("pids.max")));
  // memory.max is absent (no memory controller): asking for it fails, naming it.
  Status s = WriteCgroupLimits(fd(), {int64_t{1 << 20}, std::nullopt, std::nullopt});
  EXPECT_FALSE(s.ok());
  EXPECT_NE(std::string::npos, s.message().find("memory.max")) << s.ToString();
}

TEST_F(FakeCgroup, PopulatedIsReadFromCgroupEvents) {
  File("cgroup.events", "populated 1\nfrozen 0\n");
  EXPECT_TRUE(Or(CgroupPopulated(fd()), false));
  File("cgroup.events", "populated 0\nfrozen 0\n");
  EXPECT_FALSE(Or(CgroupPopulated(fd()), true));
}

TEST(CgroupTreeSetUp, OffIsNoneAndSaysSo) {
  auto t = CgroupTree::SetUp({.mode = "off", .root = ""});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(CgroupMode::kNone, t->mode());
  EXPECT_NE(std::string::npos, t->why().find("off"));
}

TEST(CgroupTreeSetUp, NoCgroup2MountIsNoneWithTheReason) {
  TempDir dir;
  WriteFile(dir.File("mountinfo"), "35 33 0:30 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n");
  auto t = CgroupTree::SetUp({.mode = "auto", .root = "", .mountinfo_path = dir.File("mountinfo")});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(CgroupMode::kNone, t->mode());
  EXPECT_NE(std::string::npos, t->why().find("no cgroup2 filesystem is mounted")) << t->why();
}

TEST(CgroupTreeSetUp, AnExplicitRootThatCannotBeUsedIsAnError) {
  TempDir dir;
  // A plain directory is not on cgroup2.
  auto t = CgroupTree::SetUp({.mode = "auto", .root = dir.File("runs")});
  if (test::Cgroup2Mount().empty()) {
    EXPECT_FALSE(t.ok());
    return;
  }
  ASSERT_FALSE(t.ok());
  EXPECT_NE(std::string::npos, t.status().message().find("not on a cgroup2 filesystem"))
      << t.status().ToString();
}

TEST(CgroupTreeSetUp, UnsupportedLimitNamesTheField) {
  CgroupTree none = CgroupTree::None("test");
  EXPECT_EQ("memory_max", none.UnsupportedLimit({int64_t{1}, 1.0, int64_t{1}}));
  EXPECT_EQ("cpu_max", none.UnsupportedLimit({std::nullopt, 1.0, std::nullopt}));
  EXPECT_EQ("pids_max", none.UnsupportedLimit({std::nullopt, std::nullopt, int64_t{1}}));
  EXPECT_EQ("", none.UnsupportedLimit({}));
}

// The real hierarchy, where there is one (these machines: cgroup2 without
// controllers, at /sys/fs/cgroup/unified).
class RealCgroup : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = test::TestCgroupRoot(dir_);
    if (root_.empty()) GTEST_SKIP() << "no cgroup2 filesystem mounted here";
  }
  void TearDown() override { test::DestroyCgroupTree(root_); }
  TempDir dir_;
  std::string root_;
};

TEST_F(RealCgroup, TheRootIsLockedByOneDaemon) {
  auto first = CgroupTree::SetUp({.mode = "auto", .root = root_});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_NE(CgroupMode::kNone, first->mode());
  auto second = CgroupTree::SetUp({.mode = "auto", .root = root_});
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(Code::kConflict, second.status().code());
  EXPECT_NE(std::string::npos, second.status().message().find("another orchestrator daemon"));
}

// The first image moved itself into <own>/supervisor to give controllers to
// <own>/runs; after a re-exec the runs are still beside that leaf, not under it.
TEST_F(RealCgroup, AfterAReexecTheRunsStayBesideTheSupervisorLeaf) {
  std::string mount = test::Cgroup2Mount();
  std::string own = root_.substr(mount.size()) + "/supervisor";
  WriteFile(dir_.File("self-cgroup"), "0::" + own + "\n");
  auto after = CgroupTree::SetUp({.mode = "auto",
                                  .root = "",
                                  .after_reexec = true,
                                  .self_cgroup_path = dir_.File("self-cgroup")});
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(root_ + "/runs", after->root());
}

TEST_F(RealCgroup, KillReachesAProcessThatLeftItsSessionAndListRunsFindsTheCgroup) {
  auto tree = CgroupTree::SetUp({.mode = "auto", .root = root_});
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  auto cg = RunCgroup::Create(*tree, 42, {});
  ASSERT_TRUE(cg.ok()) << cg.status().ToString();
  EXPECT_EQ(std::vector<int64_t>{42}, Or(tree->ListRuns(), std::vector<int64_t>{}));
  // A double-forked sleeper in its own session, moved into the cgroup.
  std::string procs_path = cg->path() + "/cgroup.procs";
  pid_t child = fork();
  if (child == 0) {
    int procs = open(procs_path.c_str(), O_WRONLY);
    if (procs < 0 || write(procs, "0", 1) != 1) _exit(126);
    if (fork() == 0) {
      setsid();
      execl("/bin/sleep", "sleep", "300", nullptr);
      _exit(127);
    }
    _exit(0);
  }
  int status;
  waitpid(child, &status, 0);
  ASSERT_TRUE(test::WaitFor([&] { return Or(CgroupProcs(cg->fd()), std::vector<pid_t>{}).size() == 1; }));
  pid_t escaped = CgroupProcs(cg->fd()).value()[0];
  auto watch = Pidfd::Open(escaped);
  ASSERT_TRUE(watch.ok());
  EXPECT_TRUE(Or(CgroupPopulated(cg->fd()), false));
  ASSERT_TRUE(KillCgroup(cg->fd()).ok());
  EXPECT_TRUE(test::WaitFor([&] { return watch->Exited(); }));
  EXPECT_TRUE(test::WaitFor([&] { return !Or(CgroupPopulated(cg->fd()), true); }));
  EXPECT_TRUE(cg->Remove().ok());
  EXPECT_TRUE(Or(tree->ListRuns(), std::vector<int64_t>{1}).empty());
}

TEST_F(RealCgroup, ARunCgroupIsNeverReusedAndRemovalTakesWhatTheJobMadeBelowIt) {
  auto tree = CgroupTree::SetUp({.mode = "auto", .root = root_});
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  auto cg = RunCgroup::Create(*tree, 3, {});
  ASSERT_TRUE(cg.ok());
  auto again = RunCgroup::Create(*tree, 3, {});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(Code::kConflict, again.status().code());
  ASSERT_EQ(0, mkdir((cg->path() + "/inner").c_str(), 0755));
  ASSERT_EQ(0, mkdir((cg->path() + "/inner/deeper").c_str(), 0755));
  EXPECT_TRUE(cg->Remove().ok());
  EXPECT_FALSE(std::filesystem::exists(cg->path()));
  // A new cgroup under the old name is not the old object's to remove.
  auto replaced = RunCgroup::Create(*tree, 3, {});
  ASSERT_TRUE(replaced.ok());
  EXPECT_TRUE(cg->Remove().ok());
  EXPECT_TRUE(std::filesystem::exists(replaced->path()));
  EXPECT_TRUE(replaced->Remove().ok());
}

TEST_F(RealCgroup, SignalReachesEveryMemberAndNoOneElse) {
  auto tree = CgroupTree::SetUp({.mode = "auto", .root = root_});
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  auto cg = RunCgroup::Create(*tree, 1, {});
  ASSERT_TRUE(cg.ok());
  pid_t in = test::ForkSleeperInCgroup(cg->path());
  pid_t out = fork();  // a sleeper outside it
  if (out == 0) {
    execl("/bin/sleep", "sleep", "300", nullptr);
    _exit(127);
  }
  ASSERT_TRUE(test::WaitFor([&] { return Or(CgroupProcs(cg->fd()), std::vector<pid_t>{}).size() == 1; }));
  ASSERT_TRUE(SignalCgroup(cg->fd(), SIGTERM).ok());
  int status = 0;
  ASSERT_EQ(in, waitpid(in, &status, 0));
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
  EXPECT_EQ(0, waitpid(out, &status, WNOHANG)) << "a process outside the cgroup was signalled";
  kill(out, SIGKILL);
  waitpid(out, &status, 0);
  EXPECT_TRUE(test::WaitFor([&] { return cg->Remove().ok(); }));
}

TEST_F(RealCgroup, ARecordedCgroupIsTrustedOnlyWhenItCanBeThatRunsOwn) {
  auto tree = CgroupTree::SetUp({.mode = "auto", .root = root_});
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  auto cg = RunCgroup::Create(*tree, 5, {});
  ASSERT_TRUE(cg.ok());
  Containment containment(std::move(tree).value());
  orch::Run run;
  run.id = 5;
  run.cgroup = cg->path();
  EXPECT_EQ(cg->path(), containment.ForRecorded(run)->cgroup());
  // A store row naming another cgroup (the daemon's root, a service's) or
  // a plain directory is never taken for the run's: cgroup.kill there would
  // reach processes that are not the run's.
  for (const std::string& other : {root_, test::Cgroup2Mount(), dir_.path() + "/run-5"}) {
    run.cgroup = other;
    EXPECT_EQ("", containment.ForRecorded(run)->cgroup()) << other;
  }
  run.id = 6;
  run.cgroup = cg->path();
  EXPECT_EQ("", containment.ForRecorded(run)->cgroup());
  EXPECT_TRUE(cg->Remove().ok());
}

// A run's cgroup read empty after its leader's exit answers the drain that
// follows without another read, but only that once: a process put back in
// later (anyone allowed to write cgroup.procs can) is seen, killed, and the
// cgroup removed.
TEST_F(RealCgroup, ACgroupRepopulatedAfterItWasSeenEmptyIsKilledAndRemoved) {
  auto tree = CgroupTree::SetUp({.mode = "auto", .root = root_});
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  Containment containment(std::move(tree).value());
  auto scope = containment.Prepare(8, {});
  ASSERT_TRUE(scope.ok()) << scope.status().ToString();
  RunScope& run = **scope;
  run.KillRest(RunLeader{});
  EXPECT_FALSE(Or(run.Populated(), true));  // the drain's answer, from KillRest's read
  pid_t back = test::ForkSleeperInCgroup(run.cgroup());
  ASSERT_GT(back, 0);
  struct Reaper {
    pid_t pid;
    ~Reaper() {
      if (pid > 0 && kill(pid, SIGKILL) == 0) waitpid(pid, nullptr, 0);
    }
  } reaper{back};
  ASSERT_TRUE(test::WaitFor([&] { return Or(CgroupProcs(run.cgroup_fd()), std::vector<pid_t>{}).size() == 1; }));
  EXPECT_TRUE(Or(run.Populated(), false));
  EXPECT_EQ(Code::kUnavailable, run.Remove().code());
  run.KillRest(RunLeader{});  // what the stray sweep does
  int status = 0;
  ASSERT_EQ(back, waitpid(back, &status, 0));
  reaper.pid = 0;
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_TRUE(test::WaitFor([&] { return run.Remove().ok(); }));
  EXPECT_FALSE(std::filesystem::exists(run.cgroup()));
}

TEST(ProcessGroupScope, NeverSignalsWithoutALeader) {
  // kill(-0, sig) would reach the caller's own group.
  auto scope = ProcessGroupScope();
  scope->KillRest(RunLeader{});
  scope->Signal(RunLeader{}, SIGKILL);
  SUCCEED() << "still alive";
}

}  // namespace
}  // namespace orch
