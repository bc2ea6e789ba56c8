#include "daemon/handover.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

namespace orch {
namespace {

Handover Sample() {
  Handover h;
  h.incarnation = "42-abc";
  h.stopped_mono_ns = 123456789;
  h.handovers = 2;
  h.lock_fd = 5;
  h.sockets.tcp_fd = 7;
  h.sockets.connections = {{9, false}, {10, true}};
  HandedRun r;
  r.run_id = 3;
  r.job_id = 2;
  r.attempt = 1;
  r.pid = 4242;
  r.pidfd = 11;
  r.report = HeldExecState{12, "/bin/sleep", "/tmp", "", 0, 0};
  r.out_fd = 13;
  r.err_fd = 14;
  r.cgroup = "/sys/fs/cgroup/x/runs/run-3";
  r.timeout_s = 60;
  r.stop = StopCause::kTimeout;
  r.term_sent_mono_ms = 1500;
  r.cut_out = 10;
  h.runs.push_back(r);
  return h;
}

TEST(Handover, SurvivesASealedMemfdUnchanged) {
  auto fd = WriteHandover(EncodeHandover(Sample()));
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  auto back = ReadHandover(fd->get());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(EncodeHandover(Sample()), EncodeHandover(*back));
  ASSERT_EQ(1u, back->runs.size());
  EXPECT_EQ(4242, back->runs[0].pid);
  EXPECT_EQ(StopCause::kTimeout, back->runs[0].stop);
  ASSERT_TRUE(back->runs[0].report.has_value());
  EXPECT_EQ("/bin/sleep", back->runs[0].report->argv0);
  EXPECT_EQ(std::optional<int64_t>(60), back->runs[0].timeout_s);
  EXPECT_FALSE(back->runs[0].stall_timeout_s.has_value());
  EXPECT_EQ((std::vector<int>{5, 7, 9, 10, 11, 13, 14, 12}), back->Fds());
  // Sealed: nothing writes into it between the two images.
  EXPECT_LT(write(fd->get(), "x", 1), 0);
}

TEST(Handover, AnythingMalformedIsRefusedWhole) {
  std::string good = EncodeHandover(Sample());
  std::string bad_stop = good;
  bad_stop.replace(bad_stop.find("\"timeout\""), 9, "\"bogus\"");
  for (const std::string& bad :
       {std::string(""), std::string("[]"), std::string("{}"), std::string("{\"format\":1}"),
        std::string("not json"), good.substr(0, good.size() / 2), bad_stop}) {
    auto h = DecodeHandover(bad);
    EXPECT_FALSE(h.ok()) << bad;
    EXPECT_EQ(Code::kInvalidArgument, h.status().code()) << bad;
  }
}

TEST(Handover, SetCloseOnExecTogglesOnlyThatFd) {
  int fds[2];
  ASSERT_EQ(0, pipe2(fds, O_CLOEXEC));
  ASSERT_TRUE(SetCloseOnExec(fds[0], false).ok());
  EXPECT_EQ(0, fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
  EXPECT_NE(0, fcntl(fds[1], F_GETFD) & FD_CLOEXEC);
  ASSERT_TRUE(SetCloseOnExec(fds[0], true).ok());
  EXPECT_NE(0, fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
  close(fds[0]);
  close(fds[1]);
  EXPECT_FALSE(SetCloseOnExec(fds[0], false).ok());
}

}  // namespace
}  // namespace orch
