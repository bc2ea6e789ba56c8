#include "supervisor/pidfd.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include "supervisor/child_helpers.h"

namespace orch {
namespace {

using test::KillAndReap;
using test::RequestFor;
using test::SpawnOk;
using test::TempDir;
using test::WaitAndReap;
using test::WaitExited;

// Far above any pid_max (at most 2^22), so no process can hold it.
constexpr pid_t kImpossiblePid = 0x7ffffff0;

TEST(Pidfd, OpenOfMissingPidIsNotFound) {
  auto r = Pidfd::Open(kImpossiblePid);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(Code::kNotFound, r.status().code()) << r.status().ToString();
}

TEST(Pidfd, OpenOwnProcessIsCloexecAndNotExited) {
  auto r = Pidfd::Open(getpid());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->valid());
  EXPECT_FALSE(r->Exited());
  EXPECT_TRUE(fcntl(r->get(), F_GETFD) & FD_CLOEXEC);
}

TEST(Pidfd, DestructorAndMoveCloseExactlyOnce) {
  int raw;
  {
    auto r = Pidfd::Open(getpid());
    ASSERT_TRUE(r.ok());
    Pidfd a = std::move(r).value();
    raw = a.get();
    Pidfd b(std::move(a));
    EXPECT_FALSE(a.valid());
    EXPECT_EQ(raw, b.get());
    Pidfd c;
    c = std::move(b);
    EXPECT_EQ(raw, c.get());
    EXPECT_NE(-1, fcntl(raw, F_GETFD));
  }
  EXPECT_EQ(-1, fcntl(raw, F_GETFD));
  EXPECT_EQ(EBADF, errno);
}

TEST(Pidfd, ExitedTurnsTrueOnlyWhenTheProcessEnds) {
  TempDir dir;
  SpawnedProcess p = SpawnOk(RequestFor(dir, {"/bin/sleep", "30"}));
  ASSERT_TRUE(p.pidfd.valid());
  EXPECT_FALSE(p.pidfd.Exited());
  auto none = ReapPidfd(p.pidfd.get());
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value()) << "a running child must not be reaped";
  ASSERT_TRUE(p.pidfd.SendSignal(SIGTERM).ok());
  ASSERT_TRUE(WaitExited(p.pidfd));
  EXPECT_TRUE(p.pidfd.Exited());
  auto info = ReapPidfd(p.pidfd.get());
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  ASSERT_TRUE(info->has_value());
  EXPECT_FALSE((*info)->exited);
  EXPECT_EQ(SIGTERM, (*info)->signal);
  EXPECT_EQ(128 + SIGTERM, (*info)->ShellCode());
}

TEST(Pidfd, SignalAfterReapIsNotFound) {
  TempDir dir;
  SpawnedProcess p = SpawnOk(RequestFor(dir, {"/bin/true"}));
  auto info = WaitAndReap(p.pidfd);
  ASSERT_TRUE(info.has_value());
  Status s = p.pidfd.SendSignal(SIGTERM);
  EXPECT_EQ(Code::kNotFound, s.code()) << s.ToString();
  EXPECT_TRUE(p.pidfd.Exited());
}

TEST(Pidfd, ReapTwiceIsAnError) {
  TempDir dir;
  SpawnedProcess p = SpawnOk(RequestFor(dir, {"/bin/true"}));
  ASSERT_TRUE(WaitAndReap(p.pidfd).has_value());
  auto again = ReapPidfd(p.pidfd.get());
  EXPECT_FALSE(again.ok()) << "ECHILD expected after the child was reaped";
}

TEST(Pidfd, ExitInfoFromPidfdAfterReapGivesCodeAndSignal) {
  TempDir dir;
  SpawnedProcess p = SpawnOk(RequestFor(dir, {"/bin/sh", "-c", "exit 3"}));
  ASSERT_TRUE(WaitAndReap(p.pidfd).has_value());
  auto info = ExitInfoFromPidfd(p.pidfd.get());
  if (!info.has_value()) GTEST_SKIP() << "kernel has no PIDFD_INFO_EXIT (6.15+)";
  EXPECT_TRUE(info->exited);
  EXPECT_EQ(3, info->code);

  SpawnedProcess k = SpawnOk(RequestFor(dir, {"/bin/sleep", "30"}));
  ASSERT_TRUE(k.pidfd.SendSignal(SIGKILL).ok());
  ASSERT_TRUE(WaitAndReap(k.pidfd).has_value());
  auto killed = ExitInfoFromPidfd(k.pidfd.get());
  ASSERT_TRUE(killed.has_value());
  EXPECT_FALSE(killed->exited);
  EXPECT_EQ(SIGKILL, killed->signal);
  EXPECT_EQ(137, killed->ShellCode());
}

TEST(Pidfd, ExitInfoFromPidfdOfLiveProcessIsNullopt) {
  TempDir dir;
  SpawnedProcess p = SpawnOk(RequestFor(dir, {"/bin/sleep", "30"}));
  EXPECT_FALSE(ExitInfoFromPidfd(p.pidfd.get()).has_value());
  KillAndReap(p.pidfd);
}

TEST(Pidfd, ExitInfoFromNonPidfdIsNullopt) {
  int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_FALSE(ExitInfoFromPidfd(fd).has_value());
  close(fd);
}

}  // namespace
}  // namespace orch
