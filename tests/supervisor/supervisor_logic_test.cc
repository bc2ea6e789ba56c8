// Pure logic of the supervisor: backoff arithmetic and exit → outcome.
#include <gtest/gtest.h>

#include "supervisor/supervisor.h"

namespace orch {
namespace {

TEST(Backoff, DoublesFromTheBaseAndStopsAtTheMaximum) {
  // unit_random 0.5 is the middle of the jitter range: factor 1.0.
  EXPECT_EQ(1000, BackoffMs(1, 1.0, 300.0, 0.5));
  EXPECT_EQ(2000, BackoffMs(2, 1.0, 300.0, 0.5));
  EXPECT_EQ(4000, BackoffMs(3, 1.0, 300.0, 0.5));
  EXPECT_EQ(256000, BackoffMs(9, 1.0, 300.0, 0.5));
  EXPECT_EQ(300000, BackoffMs(10, 1.0, 300.0, 0.5));
  EXPECT_EQ(300000, BackoffMs(1000, 1.0, 300.0, 0.5)) << "no overflow for huge attempts";
}

TEST(Backoff, JitterStaysWithinTwentyPercent) {
  EXPECT_EQ(800, BackoffMs(1, 1.0, 300.0, 0.0));
  EXPECT_EQ(1200, BackoffMs(1, 1.0, 300.0, 1.0));
  for (double r = 0; r < 1.0; r += 0.01) {
    int64_t ms = BackoffMs(4, 0.5, 300.0, r);
    EXPECT_GE(ms, 3200);
    EXPECT_LE(ms, 4800);
  }
}

TEST(DecideRunEnd, ExitZeroSucceeds) {
  ExitInfo e{true, 0, 0};
  RunEnd end = DecideRunEnd(e, StopCause::kNone, {75}, 0);
  EXPECT_EQ(RunOutcome::kSucceeded, end.outcome);
  EXPECT_EQ("exit 0", end.reason);
  EXPECT_EQ(0, end.exit_code);
  EXPECT_FALSE(end.signal);
}

TEST(DecideRunEnd, TransientCodesAreTransientOthersFail) {
  EXPECT_EQ(RunOutcome::kTransient, DecideRunEnd({true, 75, 0}, StopCause::kNone, {75}, 0).outcome);
  RunEnd failed = DecideRunEnd({true, 3, 0}, StopCause::kNone, {75}, 0);
  EXPECT_EQ(RunOutcome::kFailed, failed.outcome);
  EXPECT_EQ("exit 3", failed.reason);
  EXPECT_EQ(3, failed.exit_code);
}

TEST(DecideRunEnd, AForeignSignalFailsWithShellStyleCode) {
  RunEnd end = DecideRunEnd({false, 0, 9}, StopCause::kNone, {75}, 0);
  EXPECT_EQ(RunOutcome::kFailed, end.outcome);
  EXPECT_EQ("signal 9", end.reason);
  EXPECT_EQ(137, end.exit_code);
  EXPECT_EQ(9, end.signal);
}

TEST(DecideRunEnd, StopsCausedByTheSupervisorWinOverTheExitStatus) {
  EXPECT_EQ(RunOutcome::kTimeout, DecideRunEnd({false, 0, 15}, StopCause::kTimeout, {}, 5).outcome);
  EXPECT_EQ(RunOutcome::kCancelled, DecideRunEnd({true, 0, 0}, StopCause::kCancel, {}, 0).outcome);
  EXPECT_EQ(RunOutcome::kInterrupted, DecideRunEnd({false, 0, 15}, StopCause::kShutdown, {}, 0).outcome);
  EXPECT_EQ(RunOutcome::kInterrupted, DecideRunEnd({true, 127, 0}, StopCause::kUnrecorded, {}, 0).outcome);
}

TEST(DecideRunEnd, AStallIsRetriedLikeATimeoutWithReasonNoProgress) {
  RunEnd end = DecideRunEnd({false, 0, 15}, StopCause::kStalled, {}, 120);
  EXPECT_EQ(RunOutcome::kStalled, end.outcome);
  EXPECT_EQ("no_progress", end.reason);
  EXPECT_NE(std::string::npos, end.error.find("120s")) << end.error;
}

TEST(CgroupUsageOnTheEnd, AnOomKillFailsARunThatDiedOfIt) {
  RunEnd end = DecideRunEnd({false, 0, 9}, StopCause::kNone, {75}, 0);
  CgroupUsage usage{int64_t{5000}, int64_t{1} << 30, int64_t{1} << 29, int64_t{1}};
  EXPECT_TRUE(ApplyCgroupUsage(end, usage, StopCause::kNone));
  EXPECT_EQ(RunOutcome::kFailed, end.outcome);
  EXPECT_EQ("oom_kill", end.reason);
  EXPECT_NE(std::string::npos, end.error.find("signal 9")) << end.error;
  EXPECT_EQ(5000, end.cpu_usec.value_or(0));
  EXPECT_EQ(int64_t{1} << 30, end.mem_peak_bytes.value_or(0));
  EXPECT_EQ(1, end.oom_kills.value_or(0));
}

TEST(CgroupUsageOnTheEnd, AnOomKillDoesNotOverrideSuccessOrOurOwnStop) {
  CgroupUsage usage{int64_t{1}, int64_t{1}, std::nullopt, int64_t{2}};
  // A child was OOM-killed but the job coped and exited 0.
  RunEnd ok = DecideRunEnd({true, 0, 0}, StopCause::kNone, {75}, 0);
  EXPECT_FALSE(ApplyCgroupUsage(ok, usage, StopCause::kNone));
  EXPECT_EQ(RunOutcome::kSucceeded, ok.outcome);
  EXPECT_EQ(2, ok.oom_kills.value_or(0));
  RunEnd cancelled = DecideRunEnd({false, 0, 15}, StopCause::kCancel, {75}, 0);
  EXPECT_FALSE(ApplyCgroupUsage(cancelled, usage, StopCause::kCancel));
  EXPECT_EQ(RunOutcome::kCancelled, cancelled.outcome);
  // No OOM kill: the outcome stands, only the accounting is added.
  RunEnd failed = DecideRunEnd({true, 3, 0}, StopCause::kNone, {75}, 0);
  EXPECT_FALSE(ApplyCgroupUsage(failed, {int64_t{7}, {}, {}, int64_t{0}}, StopCause::kNone));
  EXPECT_EQ("exit 3", failed.reason);
  EXPECT_EQ(7, failed.cpu_usec.value_or(0));
}

}  // namespace
}  // namespace orch
