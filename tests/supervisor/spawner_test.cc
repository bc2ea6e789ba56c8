#include "supervisor/spawner.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <vector>
#include <condition_variable>
#include <mutex>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "base/unique_fd.h"
#include "supervisor/child_helpers.h"
#include "supervisor/cgroup.h"
#include "supervisor/child_report.h"
#include "supervisor/identity.h"
#include "supervisor/log_dir.h"

namespace orch {
namespace {

using test::KillAndReap;
using test::ReadFile;
using test::RequestFor;
using test::RunToExit;
using test::SpawnOk;
using test::TempDir;
using test::TestRequest;
using test::WaitAndReap;
using test::WriteFile;

bool Contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

// Whether the pidfd lives on pidfs (kernel 6.9+), judged here rather than by
// the code under test. PID_FS_MAGIC from linux/magic.h; Debian 12's headers
// lack it.
bool OnPidfs(int pidfd) {
  struct statfs sfs {};
  return fstatfs(pidfd, &sfs) == 0 && sfs.f_type == 0x50494446;
}

// How the child is made: a copy of the daemon by clone3 or by the fork
// fallback, or with vfork semantics through the exec helper.
enum class Mode { kClone3, kFork, kHelper };

// Runs every test of the suite in each mode.
class Spawner : public ::testing::TestWithParam<Mode> {
 protected:
  void SetUp() override {
    ForceForkFallbackForTest(GetParam() == Mode::kFork);
    if (GetParam() == Mode::kHelper) {
      SetExecHelper(open(ORCH_EXEC_HELPER, O_PATH | O_CLOEXEC), ORCH_EXEC_HELPER);
    }
  }
  void TearDown() override {
    ForceForkFallbackForTest(false);
    SetExecHelper(-1, "");
    // Every child a test started was reaped (by ReapPidfd, or by Spawn itself
    // when the exec failed): nothing is left for anyone else to wait for.
    siginfo_t info{};
    int rc = waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT);
    EXPECT_TRUE(rc < 0 && errno == ECHILD) << "a child is left unreaped, pid " << info.si_pid;
  }
  bool fork_fallback() const { return GetParam() == Mode::kFork; }
  bool helper() const { return GetParam() == Mode::kHelper; }
  TempDir dir_;
};

INSTANTIATE_TEST_SUITE_P(Clone3ForkAndExecHelper, Spawner,
                         ::testing::Values(Mode::kClone3, Mode::kFork, Mode::kHelper),
                         [](const auto& info) {
                           switch (info.param) {
                             case Mode::kClone3: return "Clone3";
                             case Mode::kFork: return "Fork";
                             case Mode::kHelper: return "ExecHelper";
                           }
                           return "unknown";
                         });

TEST_P(Spawner, TrueExitsZeroThroughThePidfd) {
  SpawnOutcome out = Spawn(RequestFor(dir_, {"/bin/true"}));
  ASSERT_TRUE(out.ok) << out.failure.message;
  // clone3 works on this host; the fallback reports that it was used.
  EXPECT_EQ(GetParam() == Mode::kClone3, out.process.used_clone3);
  EXPECT_EQ(helper(), out.process.used_exec_helper);
  EXPECT_GT(out.process.pid, 0);
  auto info = WaitAndReap(out.process.pidfd);
  ASSERT_TRUE(info.has_value());
  EXPECT_TRUE(info->exited);
  EXPECT_EQ(0, info->code);
  EXPECT_EQ(0, info->ShellCode());
}

TEST_P(Spawner, ExitCodeIsReported) {
  auto info = RunToExit(RequestFor(dir_, {"/bin/sh", "-c", "exit 3"}));
  ASSERT_TRUE(info.has_value());
  EXPECT_TRUE(info->exited);
  EXPECT_EQ(3, info->ShellCode());
}

TEST_P(Spawner, KilledBySignalIs128PlusSignal) {
  auto info = RunToExit(RequestFor(dir_, {"/bin/sh", "-c", "kill -9 $$"}));
  ASSERT_TRUE(info.has_value());
  EXPECT_FALSE(info->exited);
  EXPECT_EQ(SIGKILL, info->signal);
  EXPECT_EQ(128 + 9, info->ShellCode());
}

TEST_P(Spawner, MissingExecutableIs127WithEnoentText) {
  SpawnOutcome out = Spawn(RequestFor(dir_, {"/no/such/binary", "x"}));
  ASSERT_FALSE(out.ok);
  EXPECT_EQ(127, out.failure.shell_code);
  EXPECT_EQ(ENOENT, out.failure.err);
  EXPECT_EQ("exec /no/such/binary: No such file or directory", out.failure.message);
}

TEST_P(Spawner, CommandNotInTheJobsPathIs127) {
  TestRequest req = RequestFor(dir_, {"no-such-command-xyz"});
  SpawnOutcome out = Spawn(req);
  ASSERT_FALSE(out.ok);
  EXPECT_EQ(127, out.failure.shell_code);
  EXPECT_TRUE(Contains(out.failure.message, "no-such-command-xyz")) << out.failure.message;

  // "true" exists in the daemon's PATH, but the job's PATH decides.
  req = RequestFor(dir_, {"true"});
  req.env["PATH"] = dir_.File("empty-bin");
  out = Spawn(req);
  ASSERT_FALSE(out.ok);
  EXPECT_EQ(127, out.failure.shell_code);
}

TEST_P(Spawner, Argv0IsResolvedAgainstTheJobsPath) {
  std::string bin = dir_.File("bin");
  ASSERT_EQ(0, mkdir(bin.c_str(), 0755));
  WriteFile(bin + "/hello", "#!/bin/sh\necho \"hello $0 $1\"\n");
  ASSERT_EQ(0, chmod((bin + "/hello").c_str(), 0755));
  TestRequest req = RequestFor(dir_, {"hello", "world"});
  req.env["PATH"] = "relative/dir:/nonexistent:" + bin + ":/usr/bin:/bin";
  auto info = RunToExit(req);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(0, info->ShellCode());
  EXPECT_EQ("hello " + bin + "/hello world\n", ReadFile(req.stdout_path));
}

TEST_P(Spawner, NonExecutableFileIs126) {
  std::string path = dir_.File("script");
  WriteFile(path, "#!/bin/sh\nexit 0\n");
  ASSERT_EQ(0, chmod(path.c_str(), 0644));
  SpawnOutcome out = Spawn(RequestFor(dir_, {path}));
  ASSERT_FALSE(out.ok);
  EXPECT_EQ(126, out.failure.shell_code);
  EXPECT_EQ(EACCES, out.failure.err);
  EXPECT_EQ("exec " + path + ": Permission denied", out.failure.message);
}

TEST_P(Spawner, FileWithoutInterpreterLineIs126) {
  std::string path = dir_.File("garbage");
  WriteFile(path, "\x7f\x01\x02 not a program\n");
  ASSERT_EQ(0, chmod(path.c_str(), 0755));
  SpawnOutcome out = Spawn(RequestFor(dir_, {path}));
  ASSERT_FALSE(out.ok);
  EXPECT_EQ(126, out.failure.shell_code);
  EXPECT_EQ(ENOEXEC, out.failure.err);
}

TEST_P(Spawner, BadCwdIsAFailureNamingTheCwd) {
  TestRequest req = RequestFor(dir_, {"/bin/true"});
  req.cwd = dir_.File("no-such-dir");
  SpawnOutcome out = Spawn(req);
  ASSERT_FALSE(out.ok);
  EXPECT_EQ(126, out.failure.shell_code);
  EXPECT_EQ(ENOENT, out.failure.err);
  EXPECT_EQ("cwd " + req.cwd + ": No such file or directory", out.failure.message);
}

TEST_P(Spawner, CwdIsApplied) {
  TestRequest req = RequestFor(dir_, {"/bin/pwd"});
  req.cwd = "/usr";
  auto info = RunToExit(req);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ("/usr\n", ReadFile(req.stdout_path));
}

TEST_P(Spawner, MissingExecutableIsTheJobsFaultAndAForkFailureTheHosts) {
  TestRequest req = RequestFor(dir_, {"/no/such/binary"});
  SpawnOutcome out = Spawn(req);
  ASSERT_FALSE(out.ok);
  EXPECT_EQ(127, out.failure.shell_code);
  EXPECT_FALSE(out.failure.host_fault);

  // An invalid output fd stands for any fd the host could not provide.
  req.stdout_fd = 1 << 20;
  req.argv = {"/bin/true"};
  out = Spawn(req);
  ASSERT_FALSE(out.ok);
  EXPECT_TRUE(out.failure.host_fault) << out.failure.message;
  EXPECT_EQ(EBADF, out.failure.err);
}

TEST_P(Spawner, EmptyArgvIsAFailure) {
  TestRequest req = RequestFor(dir_, {});
  SpawnOutcome out = Spawn(req);
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(EINVAL, out.failure.err);
}

TEST_P(Spawner, OutputLandsInTheLogFilesAndAppends) {
  TestRequest req = RequestFor(dir_, {"/bin/sh", "-c", "echo out; echo err >&2"});
  for (int i = 0; i < 2; ++i) {
    auto info = RunToExit(req);
    ASSERT_TRUE(info.has_value());
    EXPECT_EQ(0, info->ShellCode());
  }
  EXPECT_EQ("out\nout\n", ReadFile(req.stdout_path));
  EXPECT_EQ("err\nerr\n", ReadFile(req.stderr_path));
  struct stat st {};
  ASSERT_EQ(0, stat(req.stdout_path.c_str(), &st));
  EXPECT_EQ(0u, st.st_mode & 0137) << std::oct << st.st_mode;  // at most 0640
}

TEST_P(Spawner, StdinIsDevNull) {
  TestRequest req = RequestFor(dir_, {"/bin/readlink", "/proc/self/fd/0"});
  auto info = RunToExit(req);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ("/dev/null\n", ReadFile(req.stdout_path));
}

TEST_P(Spawner, EnvironmentIsExactlyTheGivenOne) {
  TestRequest req = RequestFor(dir_, {"/usr/bin/env"});
  req.env = {{"A", "1"}, {"B", "two words"}, {"EMPTY", ""}};
  auto info = RunToExit(req);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(0, info->ShellCode());
  EXPECT_EQ("A=1\nB=two words\nEMPTY=\n", ReadFile(req.stdout_path));
}

TEST_P(Spawner, NoFileDescriptorIsInherited) {
  // A leak candidate: not close-on-exec, at a number the child must not see.
  int leak = open("/dev/null", O_RDONLY);
  ASSERT_GE(leak, 0);
  ASSERT_EQ(77, dup2(leak, 77));
  close(leak);
  TestRequest req = RequestFor(dir_, {"/bin/ls", "-1", "/proc/self/fd"});
  auto info = RunToExit(req);
  close(77);
  ASSERT_TRUE(info.has_value());
  std::istringstream lines(ReadFile(req.stdout_path));
  std::set<int> fds;
  for (std::string line; std::getline(lines, line);) fds.insert(std::stoi(line));
  // 0, 1, 2 and the one ls uses to read the directory.
  EXPECT_TRUE(fds.count(0) && fds.count(1) && fds.count(2));
  EXPECT_LE(fds.size(), 4u) << ReadFile(req.stdout_path);
  EXPECT_EQ(0u, fds.count(77));
  EXPECT_LE(*fds.rbegin(), 3);
}

// The child dup2s /dev/null onto 0 first: an output fd the caller has at 0
// must still reach the job's stdout (the spawner copies it above stdio).
TEST_P(Spawner, OutputFdsBelowThreeStillReachTheJob) {
  TestRequest req = RequestFor(dir_, {"/bin/sh", "-c", "echo out; echo err >&2"});
  UniqueFd saved(fcntl(0, F_DUPFD_CLOEXEC, 3));
  ASSERT_TRUE(saved.valid());
  struct Restore {
    int from;
    ~Restore() { dup2(from, 0); }
  } restore{saved.get()};
  ASSERT_EQ(0, dup2(req.out.get(), 0));
  req.stdout_fd = 0;
  auto info = RunToExit(req);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(0, info->ShellCode());
  EXPECT_EQ("out\n", ReadFile(req.stdout_path));
  EXPECT_EQ("err\n", ReadFile(req.stderr_path));
}

// Nothing a spawn opens stays open in the daemon: the fd count after many
// spawns is the one after the first (which may open /dev/null for good).
TEST_P(Spawner, SpawningLeavesNoDescriptorOpenInTheCaller) {
  auto count_fds = [] {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
      (void)e;
      ++n;
    }
    return n;
  };
  ASSERT_TRUE(RunToExit(RequestFor(dir_, {"/bin/true"})).has_value());
  int before = count_fds();
  for (int i = 0; i < 20; ++i) {
    TestRequest req = RequestFor(dir_, {"/bin/true"});
    req.hold_until_released = i % 2 == 0;
    SpawnOutcome out = Spawn(req);
    ASSERT_TRUE(out.ok) << out.failure.message;
    if (out.process.held) {
      ASSERT_TRUE(ReleaseHeld(*out.process.held).ok());
    }
    ASSERT_TRUE(WaitAndReap(out.process.pidfd).has_value());
  }
  EXPECT_EQ(before, count_fds());
}

TEST_P(Spawner, ChildLeadsANewSessionAndProcessGroup) {
  SpawnedProcess p = SpawnOk(RequestFor(dir_, {"/bin/sleep", "30"}));
  ASSERT_TRUE(p.pidfd.valid());
  std::string stat = ReadFile("/proc/" + std::to_string(p.pid) + "/stat");
  std::istringstream rest(stat.substr(stat.rfind(')') + 1));
  std::string state, ppid, pgrp, session;
  rest >> state >> ppid >> pgrp >> session;
  EXPECT_EQ(std::to_string(p.pid), pgrp);
  EXPECT_EQ(std::to_string(p.pid), session);
  EXPECT_EQ(std::to_string(getpid()), ppid);
  EXPECT_NE(getsid(0), p.pid);
  KillAndReap(p.pidfd);
}

TEST_P(Spawner, SignalMaskIsEmptyAndDispositionsDefault) {
  // The daemon ignores SIGPIPE and blocks SIGUSR1; the job must see neither.
  // Nor an ignored signal 34, which musl (the exec helper's libc) keeps for
  // itself and will not reset through sigaction().
  struct sigaction ign {
  }, old_pipe{}, old_34{};
  ign.sa_handler = SIG_IGN;
  ASSERT_EQ(0, sigaction(SIGPIPE, &ign, &old_pipe));
  ASSERT_EQ(0, sigaction(34, &ign, &old_34));
  sigset_t usr1, old_mask;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  ASSERT_EQ(0, pthread_sigmask(SIG_BLOCK, &usr1, &old_mask));
  TestRequest req = RequestFor(dir_, {"/bin/cat", "/proc/self/status"});
  auto info = RunToExit(req);
  sigaction(SIGPIPE, &old_pipe, nullptr);
  sigaction(34, &old_34, nullptr);
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ASSERT_TRUE(info.has_value());
  std::string status = ReadFile(req.stdout_path);
  EXPECT_TRUE(Contains(status, "SigBlk:\t0000000000000000\n")) << status;
  EXPECT_TRUE(Contains(status, "SigIgn:\t0000000000000000\n")) << status;
}

TEST_P(Spawner, IdentityIsFilled) {
  SpawnedProcess p = SpawnOk(RequestFor(dir_, {"/bin/sleep", "30"}));
  auto boot = CurrentBootId();
  ASSERT_TRUE(boot.ok());
  EXPECT_EQ(*boot, p.identity.boot_id);
  EXPECT_EQ(p.pid, p.identity.pid);
  EXPECT_EQ(CurrentPidNsIno(), p.identity.pidns_ino);
  auto start = ReadStartTime(p.pid);
  ASSERT_TRUE(start.ok());
  EXPECT_EQ(*start, p.identity.start_time);
  EXPECT_NE(0u, p.identity.start_time);
  if (!OnPidfs(p.pidfd.get())) {
    // Before 6.9 (Debian 12's 6.1) every pidfd shares one anon inode, which
    // names nobody: the identity records none.
    EXPECT_EQ(0u, p.identity.pidfs_ino);
    KillAndReap(p.pidfd);
    GTEST_SKIP() << "pidfds do not live on pidfs on this kernel (6.9+): pidfs inode not checked";
  }
  struct stat st {};
  EXPECT_EQ(0, fstat(p.pidfd.get(), &st));
  EXPECT_NE(0u, p.identity.pidfs_ino);
  EXPECT_EQ(static_cast<uint64_t>(st.st_ino), p.identity.pidfs_ino);
  KillAndReap(p.pidfd);
}

// The only spawn path the supervisor uses: the child waits before exec until
// its identity is recorded and the gate is opened.
TEST_P(Spawner, HeldChildExecsOnlyWhenReleased) {
  std::string marker = dir_.File("ran");
  TestRequest req = RequestFor(dir_, {"/bin/sh", "-c", "echo yes > " + marker});
  req.hold_until_released = true;
  SpawnOutcome out = Spawn(req);
  ASSERT_TRUE(out.ok) << out.failure.message;
  ASSERT_NE(nullptr, out.process.held);
  EXPECT_EQ(out.process.pid, out.process.identity.pid);
  EXPECT_NE(0u, out.process.identity.start_time);
  // Still the test binary's image (or the exec helper's), blocked on the
  // gate: the job has not been exec'd.
  char self[4096] = {}, child[4096] = {};
  ASSERT_GT(readlink("/proc/self/exe", self, sizeof self - 1), 0);
  ASSERT_GT(readlink(("/proc/" + std::to_string(out.process.pid) + "/exe").c_str(), child,
                     sizeof child - 1), 0);
  EXPECT_STREQ(helper() ? ORCH_EXEC_HELPER : self, child);
  if (helper()) {
    // The helper runs as root until the drop: nothing a client submits (the
    // job's environment) may reach its libc start-up.
    EXPECT_EQ("", ReadFile("/proc/" + std::to_string(out.process.pid) + "/environ"));
  }
  EXPECT_FALSE(test::WaitExited(out.process.pidfd, 50));

  ASSERT_TRUE(ReleaseHeld(*out.process.held).ok());
  auto info = WaitAndReap(out.process.pidfd);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(0, info->ShellCode());
  EXPECT_EQ(std::nullopt, ExecFailureAfterExit(*out.process.held));
  EXPECT_EQ("yes\n", ReadFile(marker));
}

// SPEC §12: the child is in its run's cgroup before the job is exec'd —
// from its creation where clone3 takes CLONE_INTO_CGROUP, else moved there
// while it still waits on its gate (the fork fallback shows that path).
TEST_P(Spawner, HeldChildIsInTheRunsCgroupBeforeItsExec) {
  test::TestCgroupTree cgroups(dir_);
  const std::string& root = cgroups.root;
  if (root.empty()) GTEST_SKIP() << "no cgroup2 filesystem mounted here";
  auto tree = CgroupTree::SetUp({.mode = "auto", .root = root});
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  auto cg = RunCgroup::Create(*tree, 7, {});
  ASSERT_TRUE(cg.ok()) << cg.status().ToString();

  TestRequest req = RequestFor(dir_, {"/bin/sh", "-c", "cat /proc/self/cgroup"});
  req.hold_until_released = true;
  req.cgroup_fd = cg->fd();
  SpawnOutcome out = Spawn(req);
  ASSERT_TRUE(out.ok) << out.failure.message;
  EXPECT_EQ(!fork_fallback(), out.process.cgroup_at_clone);
  std::string relative = cg->path().substr(test::Cgroup2Mount().size());
  EXPECT_TRUE(Contains(ReadFile("/proc/" + std::to_string(out.process.pid) + "/cgroup"),
                       "0::" + relative + "\n"));
  ASSERT_TRUE(ReleaseHeld(*out.process.held).ok());
  auto info = WaitAndReap(out.process.pidfd);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(0, info->ShellCode());
  // What the job itself saw.
  EXPECT_TRUE(Contains(ReadFile(req.stdout_path), "0::" + relative + "\n")) << ReadFile(req.stdout_path);
  EXPECT_TRUE(test::WaitFor([&] { auto p = CgroupPopulated(cg->fd()); return p.ok() && !*p; }));
  EXPECT_TRUE(cg->Remove().ok());
}

// /proc/PID/cmdline is readable by every local user (unlike
// /proc/PID/environ, which only the owner and root may read). A held job's
// environment (tokens, passwords) must not show up there while it waits.
TEST_P(Spawner, HeldChildsEnvironmentIsNotInItsWorldReadableCmdline) {
  TestRequest req = RequestFor(dir_, {"/bin/true"});
  req.env["SECRET_TOKEN"] = "hunter2-do-not-leak";
  req.hold_until_released = true;
  SpawnOutcome out = Spawn(req);
  ASSERT_TRUE(out.ok) << out.failure.message;
  std::string cmdline = ReadFile("/proc/" + std::to_string(out.process.pid) + "/cmdline");
  EXPECT_FALSE(Contains(cmdline, "hunter2-do-not-leak")) << "visible to any user via ps";
  ASSERT_TRUE(ReleaseHeld(*out.process.held).ok());
  auto info = WaitAndReap(out.process.pidfd);
  ASSERT_TRUE(info.has_value());
}

// A PATH search that cannot succeed (every candidate name is too long) is
// the job's failure (126, not a host fault) in every mode: a small request
// (4 KB argv[0], 2 KB PATH) must not make the helper's own exec fail E2BIG,
// a host fault that would back off all claiming and requeue it forever.
TEST_P(Spawner, HugePathSearchIsTheJobsFaultNotTheHosts) {
  TestRequest req = RequestFor(dir_, {std::string(4000, 'x')});
  std::string path = "/";
  for (int i = 0; i < 1000; ++i) path += ":/";
  req.env["PATH"] = path;
  SpawnOutcome out = Spawn(req);
  if (out.ok) KillAndReap(out.process.pidfd);
  ASSERT_FALSE(out.ok);
  EXPECT_FALSE(out.failure.host_fault) << out.failure.message;
  EXPECT_EQ(126, out.failure.shell_code) << out.failure.message;
}

TEST_P(Spawner, HeldChildThatIsDroppedExitsWithoutRunningTheJob) {
  std::string marker = dir_.File("ran");
  TestRequest req = RequestFor(dir_, {"/bin/sh", "-c", "echo yes > " + marker});
  req.hold_until_released = true;
  SpawnOutcome out = Spawn(req);
  ASSERT_TRUE(out.ok) << out.failure.message;
  out.process.held.reset();  // the daemon could not record it
  auto info = WaitAndReap(out.process.pidfd);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(127, info->ShellCode());
  struct stat st {};
  EXPECT_NE(0, stat(marker.c_str(), &st)) << "the job ran although it was never released";
}

TEST_P(Spawner, HeldChildReportsItsExecFailureAfterExit) {
  TestRequest req = RequestFor(dir_, {dir_.File("no-such-program")});
  req.hold_until_released = true;
  SpawnOutcome out = Spawn(req);
  ASSERT_TRUE(out.ok) << out.failure.message;
  ASSERT_TRUE(ReleaseHeld(*out.process.held).ok());
  auto info = WaitAndReap(out.process.pidfd);
  ASSERT_TRUE(info.has_value());
  auto failure = ExecFailureAfterExit(*out.process.held);
  ASSERT_TRUE(failure.has_value());
  EXPECT_EQ(ENOENT, failure->err);
  EXPECT_EQ(127, failure->shell_code);
  EXPECT_FALSE(failure->host_fault);
}

TEST_P(Spawner, ChildGetsTheGivenFileLimitNotTheDaemons) {
  TestRequest req = RequestFor(dir_, {"/bin/sh", "-c", "ulimit -n; ulimit -Hn"});
  req.nofile_limit = rlimit{64, 128};
  auto info = RunToExit(req);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(0, info->ShellCode()) << ReadFile(req.stderr_path);
  EXPECT_EQ("64\n128\n", ReadFile(req.stdout_path));
}

TEST_P(Spawner, OutOfFileDescriptorsIsAHostFault) {
  TestRequest req = RequestFor(dir_, {"/bin/true"});
  rlimit saved{};
  ASSERT_EQ(0, getrlimit(RLIMIT_NOFILE, &saved));
  // Fill the table up to a low limit, so the spawner's next fd fails EMFILE.
  std::vector<UniqueFd> filler;
  rlimit low = saved;
  low.rlim_cur = 64;
  ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &low));
  for (;;) {
    UniqueFd fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) break;
    filler.push_back(std::move(fd));
  }
  SpawnOutcome out = Spawn(req);
  filler.clear();
  ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &saved));
  if (out.ok) KillAndReap(out.process.pidfd);
  ASSERT_FALSE(out.ok);
  EXPECT_TRUE(out.failure.host_fault) << out.failure.message;
  EXPECT_EQ(EMFILE, out.failure.err) << out.failure.message;
}

TEST_P(Spawner, CwdIsEnteredAsTheJobUser) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  std::string private_dir = dir_.File("root-only");
  ASSERT_EQ(0, mkdir(private_dir.c_str(), 0700));
  TestRequest req = RequestFor(dir_, {"/bin/pwd"});
  req.cwd = private_dir;
  req.drop_privileges = true;
  req.uid = 65534;
  req.gid = 65534;
  req.groups = {65534};
  SpawnOutcome out = Spawn(req);
  ASSERT_FALSE(out.ok) << "nobody entered a directory only root may enter";
  EXPECT_EQ(EACCES, out.failure.err) << out.failure.message;
  EXPECT_EQ(126, out.failure.shell_code);
  EXPECT_FALSE(out.failure.host_fault);
  EXPECT_TRUE(Contains(out.failure.message, "cwd " + private_dir)) << out.failure.message;
}

// The PATH search happens in the child as the job's user: whether a program
// exists in a directory only root may enter must not show.
TEST_P(Spawner, PathIsSearchedAsTheJobUser) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  std::string private_dir = dir_.File("root-only");
  ASSERT_EQ(0, mkdir(private_dir.c_str(), 0700));
  WriteFile(private_dir + "/present", "#!/bin/sh\nexit 0\n");
  ASSERT_EQ(0, chmod((private_dir + "/present").c_str(), 0755));
  std::vector<SpawnFailure> failures;
  for (const char* name : {"present", "absent"}) {
    TestRequest req = RequestFor(dir_, {name});
    req.env = {{"PATH", private_dir + ":/usr/bin:/bin"}};
    req.drop_privileges = true;
    req.uid = 65534;
    req.gid = 65534;
    req.groups = {65534};
    SpawnOutcome out = Spawn(req);
    ASSERT_FALSE(out.ok) << name;
    failures.push_back(out.failure);
  }
  EXPECT_EQ(EACCES, failures[0].err) << failures[0].message;
  EXPECT_EQ(failures[0].err, failures[1].err) << failures[1].message;
  EXPECT_EQ(failures[0].shell_code, failures[1].shell_code);
  EXPECT_FALSE(failures[0].host_fault);

  // And as root the same search finds it.
  TestRequest root = RequestFor(dir_, {"present"});
  root.env = {{"PATH", private_dir + ":/usr/bin:/bin"}};
  auto info = RunToExit(root);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(0, info->ShellCode());
}

TEST_P(Spawner, DropPrivilegesToNobody) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  TestRequest req = RequestFor(dir_, {"/usr/bin/id"});
  req.drop_privileges = true;
  req.uid = 65534;
  req.gid = 65534;
  req.groups = {65534};
  auto info = RunToExit(req);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(0, info->ShellCode()) << ReadFile(req.stderr_path);
  std::string out = ReadFile(req.stdout_path);
  EXPECT_TRUE(Contains(out, "uid=65534(")) << out;
  EXPECT_TRUE(Contains(out, "gid=65534(")) << out;
  EXPECT_TRUE(Contains(out, "groups=65534(")) << out;
  EXPECT_FALSE(Contains(out, "(root)")) << out;
}

// After a raw clone3 the child's glibc still believes the parent's threads
// exist; glibc's setuid() would try to signal them. The child must use raw
// syscalls, and this must neither hang nor fail.
TEST_P(Spawner, DropPrivilegesWhileTheParentHasOtherThreads) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::thread other([&] {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
  });
  TestRequest req = RequestFor(dir_, {"/usr/bin/id", "-u"});
  req.drop_privileges = true;
  req.uid = 65534;
  req.gid = 65534;
  auto info = RunToExit(req);
  {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
  }
  cv.notify_all();
  other.join();
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(0, info->ShellCode());
  EXPECT_EQ("65534\n", ReadFile(req.stdout_path));
}

TEST_P(Spawner, FailedPrivilegeDropIsAFailure) {
  TestRequest req = RequestFor(dir_, {"/bin/true"});
  req.drop_privileges = true;
  req.uid = 65534;
  req.gid = 65534;
  req.groups.assign(70000, 65534);  // above NGROUPS_MAX (65536): setgroups says EINVAL
  SpawnOutcome out = Spawn(req);
  ASSERT_FALSE(out.ok);
  EXPECT_EQ(126, out.failure.shell_code);
  EXPECT_EQ(geteuid() == 0 ? EINVAL : EPERM, out.failure.err) << out.failure.message;
  EXPECT_TRUE(Contains(out.failure.message, "setgroups")) << out.failure.message;
}

TEST(LogCap, WriterKeepsAppendingAfterACut) {
  TempDir dir;
  // The child writes, then waits on a fifo (stdin is /dev/null) until the cut is done.
  std::string fifo = dir.File("go");
  ASSERT_EQ(0, mkfifo(fifo.c_str(), 0600));
  TestRequest req = RequestFor(
      dir, {"/bin/sh", "-c", "head -c 5000 /dev/zero; read x < " + fifo + "; echo tail"});
  SpawnedProcess p = SpawnOk(req);
  ASSERT_TRUE(test::WaitFor([&] {
    struct stat st {};
    return stat(req.stdout_path.c_str(), &st) == 0 && st.st_size == 5000;
  }));
  auto r = EnforceLogCap(req.out.get(), 1000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(4000, *r);
  int w = open(fifo.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(w, 0);
  ASSERT_EQ(1, write(w, "\n", 1));
  close(w);
  auto info = WaitAndReap(p.pidfd);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(0, info->ShellCode());
  // O_APPEND: the next write lands at the new end, with no hole of zeros.
  EXPECT_EQ(std::string(1000, '\0') + "tail\n", ReadFile(req.stdout_path));
}

}  // namespace
}  // namespace orch

namespace orch {
namespace {

// A helper that cannot read its plan (here: a closed fd) says so on the
// report pipe, so that the daemon counts a host fault, not the job's exit 127.
TEST(ExecHelperBinary, APlanItCannotReadIsReportedNotAnExit127) {
  int report[2];
  ASSERT_EQ(0, pipe2(report, O_CLOEXEC));
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // A copy without CLOEXEC (dup2 onto the same number would keep it).
    int fd = fcntl(report[1], F_DUPFD, 20);
    std::string report_arg = std::to_string(fd);
    close(999);  // the plan fd: closed
    const char* argv[] = {"orchestrator-exec", "999", report_arg.c_str(), nullptr};
    execv(ORCH_EXEC_HELPER, const_cast<char* const*>(argv));
    _exit(100);
  }
  close(report[1]);
  int status = 0;
  ASSERT_EQ(pid, waitpid(pid, &status, 0));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 127) << status;
  ChildReport r{};
  ASSERT_EQ(static_cast<ssize_t>(sizeof r), read(report[0], &r, sizeof r)) << "nothing reported";
  close(report[0]);
  EXPECT_EQ(kStageHelperArgs, r.stage);
  EXPECT_EQ(EBADF, r.err);
}

}  // namespace
}  // namespace orch
