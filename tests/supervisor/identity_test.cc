#include "supervisor/identity.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <string>

#include "supervisor/child_helpers.h"

namespace orch {
namespace {

using test::KillAndReap;
using test::ReadFile;
using test::RequestFor;
using test::SpawnOk;
using test::TempDir;
using test::WaitAndReap;
using test::WaitExited;

// A /proc/<pid>/stat line with `comm` and starttime (field 22) = `start`.
std::string StatLine(const std::string& comm, const std::string& start) {
  // fields 3..21: state ppid pgrp session tty_nr tpgid flags minflt cminflt
  // majflt cmajflt utime stime cutime cstime priority nice num_threads itrealvalue
  return "4242 (" + comm + ") S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 " + start +
         " 2400000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
}

TEST(ParseStatStartTime, PlainName) {
  EXPECT_EQ(std::optional<uint64_t>(987654), ParseStatStartTime(StatLine("sleep", "987654")));
}

TEST(ParseStatStartTime, NameWithSpacesParensAndNewlinesCannotShiftFields) {
  for (const std::string comm :
       {"a b c", "x) R 1 2 3", "((", ")", ") 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5 5",
        "new\nline", "(a) (b)", " "}) {
    EXPECT_EQ(std::optional<uint64_t>(31337), ParseStatStartTime(StatLine(comm, "31337")))
        << "comm=" << comm;
  }
}

TEST(ParseStatStartTime, ExactlyTwentyTwoFieldsWithoutNewline) {
  EXPECT_EQ(std::optional<uint64_t>(77),
            ParseStatStartTime("1 (x) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 77"));
}

TEST(ParseStatStartTime, RealLineOfThisProcess) {
  auto start = ParseStatStartTime(ReadFile("/proc/self/stat"));
  ASSERT_TRUE(start.has_value());
  EXPECT_GT(*start, 0u);
}

TEST(ParseStatStartTime, MalformedTextIsRejected) {
  for (const std::string& text : {
           std::string(""), std::string("4242"),
           std::string("4242 (sleep S 1 2 3"),  // no ')'
           std::string("(sleep) S 1 2 3"),      // no pid
           std::string("abc (sleep) S 1"),      // pid not numeric
           std::string("4242 (sleep)S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 5"),
           std::string("4242 (sleep) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0"),
           StatLine("sleep", "12x"), StatLine("sleep", "-5"),
           StatLine("sleep", "99999999999999999999999"),  // overflows uint64
       }) {
    EXPECT_FALSE(ParseStatStartTime(text).has_value()) << "text=" << text;
  }
}

TEST(ProcessIdentity, BootIdIsTheKernelsWithoutNewline) {
  auto id = CurrentBootId();
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(36u, id->size());
  std::string raw = ReadFile("/proc/sys/kernel/random/boot_id");
  EXPECT_EQ(raw.substr(0, 36), *id);
  EXPECT_EQ(std::string::npos, id->find('\n'));
}

TEST(ProcessIdentity, PidNamespaceInodeIsKnown) { EXPECT_NE(0u, CurrentPidNsIno()); }

TEST(ProcessIdentity, ReadStartTimeOfSelfMatchesStat) {
  auto t = ReadStartTime(getpid());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(ParseStatStartTime(ReadFile("/proc/self/stat")), std::optional<uint64_t>(*t));
}

TEST(ProcessIdentity, PidfsInodeIsZeroForOtherFiles) {
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(0u, PidfsInode(fd));
  close(fd);
}

TEST(ProcessIdentity, GoneReasonNamesAreTheApiStrings) {
  EXPECT_STREQ("boot_changed", GoneReasonName(GoneReason::kBootChanged));
  EXPECT_STREQ("pid_gone", GoneReasonName(GoneReason::kPidGone));
  EXPECT_STREQ("start_time_mismatch", GoneReasonName(GoneReason::kStartTimeMismatch));
}

// Nothing was sent to the process: no signal pending, and it still runs.
void ExpectUntouched(const SpawnedProcess& p) {
  EXPECT_FALSE(p.pidfd.Exited());
  std::string status = ReadFile("/proc/" + std::to_string(p.pid) + "/status");
  EXPECT_NE(std::string::npos, status.find("SigPnd:\t0000000000000000")) << status;
  EXPECT_NE(std::string::npos, status.find("ShdPnd:\t0000000000000000")) << status;
}

TEST(ProcessIdentity, OwnChildVerifiesAndReturnsAUsablePidfd) {
  TempDir dir;
  SpawnedProcess p = SpawnOk(test::RequestFor(dir, {"/bin/sleep", "30"}));
  auto v = Verify(p.identity);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_FALSE(v->gone.has_value()) << GoneReasonName(*v->gone);
  ASSERT_TRUE(v->pidfd.valid());
  EXPECT_EQ(PidfsInode(p.pidfd.get()), PidfsInode(v->pidfd.get()));
  // The verified pidfd reaches the same process: kill through it, reap through it.
  ASSERT_TRUE(v->pidfd.SendSignal(SIGKILL).ok());
  auto info = WaitAndReap(v->pidfd);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(SIGKILL, info->signal);
  EXPECT_TRUE(p.pidfd.Exited());
}

TEST(ProcessIdentity, ReusedPidWithOtherStartTimeIsGoneAndNotSignalled) {
  TempDir dir;
  SpawnedProcess p = SpawnOk(RequestFor(dir, {"/bin/sleep", "30"}));
  ProcessIdentity forged = p.identity;
  forged.start_time += 1;  // as if the recorded run were an older holder of this pid
  auto v = Verify(forged);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_TRUE(v->gone.has_value());
  EXPECT_EQ(GoneReason::kStartTimeMismatch, *v->gone);
  EXPECT_FALSE(v->pidfd.valid());
  ExpectUntouched(p);
  KillAndReap(p.pidfd);
}

TEST(ProcessIdentity, OtherBootIsBootChangedWithoutTouchingTheProcess) {
  TempDir dir;
  SpawnedProcess p = SpawnOk(RequestFor(dir, {"/bin/sleep", "30"}));
  ProcessIdentity forged = p.identity;
  forged.boot_id = "00000000-0000-0000-0000-000000000000";
  auto v = Verify(forged);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_TRUE(v->gone.has_value());
  EXPECT_EQ(GoneReason::kBootChanged, *v->gone);
  EXPECT_FALSE(v->pidfd.valid());
  ExpectUntouched(p);
  KillAndReap(p.pidfd);
}

TEST(ProcessIdentity, ReapedPidIsGone) {
  TempDir dir;
  SpawnedProcess p = SpawnOk(RequestFor(dir, {"/bin/true"}));
  ASSERT_TRUE(WaitAndReap(p.pidfd).has_value());
  EXPECT_EQ(Code::kNotFound, ReadStartTime(p.pid).status().code());
  auto v = Verify(p.identity);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_TRUE(v->gone.has_value());
  EXPECT_EQ(GoneReason::kPidGone, *v->gone);
}

TEST(ProcessIdentity, ExitedButUnreapedProcessIsGone) {
  TempDir dir;
  SpawnedProcess p = SpawnOk(RequestFor(dir, {"/bin/true"}));
  ASSERT_TRUE(WaitExited(p.pidfd));  // a zombie: /proc/<pid>/stat still reads
  auto v = Verify(p.identity);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_TRUE(v->gone.has_value());
  EXPECT_EQ(GoneReason::kPidGone, *v->gone);
  ASSERT_TRUE(WaitAndReap(p.pidfd).has_value());
}

TEST(ProcessIdentity, PidfsInodeMismatchIsGone) {
  TempDir dir;
  SpawnedProcess p = SpawnOk(RequestFor(dir, {"/bin/sleep", "30"}));
  if (p.identity.pidfs_ino == 0) {
    KillAndReap(p.pidfd);
    GTEST_SKIP() << "pidfds do not live on pidfs on this kernel";
  }
  ProcessIdentity forged = p.identity;
  forged.pidfs_ino += 1;
  auto v = Verify(forged);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_TRUE(v->gone.has_value());
  EXPECT_EQ(GoneReason::kStartTimeMismatch, *v->gone);
  ExpectUntouched(p);

  forged.pidfs_ino = 0;  // recorded without one (older kernel): start time decides
  auto v2 = Verify(forged);
  ASSERT_TRUE(v2.ok());
  EXPECT_FALSE(v2->gone.has_value());
  KillAndReap(p.pidfd);
}

TEST(ProcessIdentity, ImpossiblePidIsGone) {
  auto boot = CurrentBootId();
  ASSERT_TRUE(boot.ok());
  for (int64_t pid : {int64_t{0}, int64_t{-1}, int64_t{0x7ffffff0}, int64_t{1} << 40}) {
    ProcessIdentity id;
    id.boot_id = *boot;
    id.pid = pid;
    id.start_time = 1;
    auto v = Verify(id);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    ASSERT_TRUE(v->gone.has_value()) << pid;
    EXPECT_EQ(GoneReason::kPidGone, *v->gone) << pid;
  }
}

}  // namespace
}  // namespace orch
