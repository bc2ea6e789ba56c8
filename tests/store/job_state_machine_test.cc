// The job state machine (SPEC §4) against explicit tables: every (from, to)
// pair of the transition table, and every (status, outcome, cancel_requested,
// attempts vs max_attempts) a run end can meet, plus claim, cancel and retry
// from every status. The expectations are written out, not recomputed.
#include "store/job_state_machine.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "base/log.h"

namespace orch::test {
namespace {

using S = JobStatus;
using O = RunOutcome;

constexpr S kStatuses[] = {S::kQueued, S::kRunning, S::kSucceeded, S::kFailed, S::kCancelled};
constexpr O kOutcomes[] = {O::kSucceeded, O::kFailed, O::kTransient,   O::kTimeout,
                           O::kCancelled, O::kLost,   O::kInterrupted, O::kSpawnFailed};

constexpr int64_t kNow = 1'000'000;
constexpr int64_t kRetryAt = 1'005'000;
constexpr int64_t kMaxAttempts = 3;

// A refused transition is logged at error level; the enumerations below
// refuse hundreds on purpose, so they run with logging off.
class QuietLog {
 public:
  QuietLog() {
    for (auto l : {log::Level::kTrace, log::Level::kDebug, log::Level::kInfo, log::Level::kWarn,
                   log::Level::kError, log::Level::kCritical}) {
      if (log::Enabled(l)) {
        previous_ = l;
        break;
      }
    }
    log::SetLevel(log::Level::kOff);
  }
  ~QuietLog() { log::SetLevel(previous_); }

 private:
  log::Level previous_ = log::Level::kOff;
};

TEST(JobStateMachine, TransitionTableAllowsExactlyTheDrawnEdges) {
  // kTable[from][to], in JobStatus order (docs/architecture.md draws it).
  constexpr bool kTable[5][5] = {
      //   queued running succeeded failed cancelled
      {false, true, false, false, true},    // queued
      {true, false, true, true, true},      // running
      {false, false, false, false, false},  // succeeded
      {true, false, false, false, false},   // failed
      {true, false, false, false, false},   // cancelled
  };
  for (int f = 0; f < 5; ++f) {
    for (int t = 0; t < 5; ++t) {
      EXPECT_EQ(kTable[f][t], TransitionAllowed(kStatuses[f], kStatuses[t]))
          << JobStatusName(kStatuses[f]) << " -> " << JobStatusName(kStatuses[t]);
    }
  }
}

enum class Attempts { kBelowMax, kAtMax, kAboveMax };
constexpr Attempts kAttemptCases[] = {Attempts::kBelowMax, Attempts::kAtMax, Attempts::kAboveMax};
const char* Name(Attempts a) {
  switch (a) {
    case Attempts::kBelowMax:
      return "attempts<max";
    case Attempts::kAtMax:
      return "attempts=max";
    case Attempts::kAboveMax:
      return "attempts>max";
  }
  return "?";
}
int64_t Count(Attempts a) {
  switch (a) {
    case Attempts::kBelowMax:
      return kMaxAttempts - 1;
    case Attempts::kAtMax:
      return kMaxAttempts;
    case Attempts::kAboveMax:
      return kMaxAttempts + 1;
  }
  return 0;
}

enum class NotBefore { kUnchanged, kNow, kRetryAt };

struct RunEndRow {
  O outcome;
  bool cancel_requested;
  Attempts attempts;
  S to;
  bool attempt_spent;
  NotBefore not_before;
};

// Every run end of a running job. A run end on a job in any other status
// is refused (kInternal).
constexpr RunEndRow kRunEndTable[] = {
    // outcome, cancel_requested, attempts → to, attempt spent, not_before
    {O::kSucceeded, false, Attempts::kBelowMax, S::kSucceeded, true, NotBefore::kUnchanged},
    {O::kSucceeded, false, Attempts::kAtMax, S::kSucceeded, true, NotBefore::kUnchanged},
    {O::kSucceeded, false, Attempts::kAboveMax, S::kSucceeded, true, NotBefore::kUnchanged},
    {O::kFailed, false, Attempts::kBelowMax, S::kFailed, true, NotBefore::kUnchanged},
    {O::kFailed, false, Attempts::kAtMax, S::kFailed, true, NotBefore::kUnchanged},
    {O::kFailed, false, Attempts::kAboveMax, S::kFailed, true, NotBefore::kUnchanged},
    {O::kSpawnFailed, false, Attempts::kBelowMax, S::kFailed, true, NotBefore::kUnchanged},
    {O::kSpawnFailed, false, Attempts::kAtMax, S::kFailed, true, NotBefore::kUnchanged},
    {O::kSpawnFailed, false, Attempts::kAboveMax, S::kFailed, true, NotBefore::kUnchanged},
    {O::kCancelled, false, Attempts::kBelowMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kCancelled, false, Attempts::kAtMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kCancelled, false, Attempts::kAboveMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kTransient, false, Attempts::kBelowMax, S::kQueued, true, NotBefore::kRetryAt},
    {O::kTransient, false, Attempts::kAtMax, S::kFailed, true, NotBefore::kUnchanged},
    {O::kTransient, false, Attempts::kAboveMax, S::kFailed, true, NotBefore::kUnchanged},
    {O::kTimeout, false, Attempts::kBelowMax, S::kQueued, true, NotBefore::kRetryAt},
    {O::kTimeout, false, Attempts::kAtMax, S::kFailed, true, NotBefore::kUnchanged},
    {O::kTimeout, false, Attempts::kAboveMax, S::kFailed, true, NotBefore::kUnchanged},
    {O::kLost, false, Attempts::kBelowMax, S::kQueued, true, NotBefore::kRetryAt},
    {O::kLost, false, Attempts::kAtMax, S::kFailed, true, NotBefore::kUnchanged},
    {O::kLost, false, Attempts::kAboveMax, S::kFailed, true, NotBefore::kUnchanged},
    // Interrupted: attempt given back; runnable at once unless the caller asks
    // for a later start (kRetryAt here; a host fault does), see below.
    {O::kInterrupted, false, Attempts::kBelowMax, S::kQueued, false, NotBefore::kRetryAt},
    {O::kInterrupted, false, Attempts::kAtMax, S::kQueued, false, NotBefore::kRetryAt},
    {O::kInterrupted, false, Attempts::kAboveMax, S::kQueued, false, NotBefore::kRetryAt},
    // A requested cancel wins over every outcome.
    {O::kSucceeded, true, Attempts::kBelowMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kSucceeded, true, Attempts::kAtMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kSucceeded, true, Attempts::kAboveMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kFailed, true, Attempts::kBelowMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kFailed, true, Attempts::kAtMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kFailed, true, Attempts::kAboveMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kSpawnFailed, true, Attempts::kBelowMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kSpawnFailed, true, Attempts::kAtMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kSpawnFailed, true, Attempts::kAboveMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kCancelled, true, Attempts::kBelowMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kCancelled, true, Attempts::kAtMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kCancelled, true, Attempts::kAboveMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kTransient, true, Attempts::kBelowMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kTransient, true, Attempts::kAtMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kTransient, true, Attempts::kAboveMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kTimeout, true, Attempts::kBelowMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kTimeout, true, Attempts::kAtMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kTimeout, true, Attempts::kAboveMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kLost, true, Attempts::kBelowMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kLost, true, Attempts::kAtMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kLost, true, Attempts::kAboveMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kInterrupted, true, Attempts::kBelowMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kInterrupted, true, Attempts::kAtMax, S::kCancelled, true, NotBefore::kUnchanged},
    {O::kInterrupted, true, Attempts::kAboveMax, S::kCancelled, true, NotBefore::kUnchanged},
};

const RunEndRow* FindRow(O outcome, bool cancel_requested, Attempts attempts) {
  const RunEndRow* found = nullptr;
  for (const auto& row : kRunEndTable) {
    if (row.outcome == outcome && row.cancel_requested == cancel_requested &&
        row.attempts == attempts) {
      EXPECT_EQ(nullptr, found) << "the table has a duplicate row";
      found = &row;
    }
  }
  return found;
}

JobState StateWith(S status, int64_t attempts, bool cancel_requested) {
  return JobState{.id = 7,
                  .status = status,
                  .attempts = attempts,
                  .max_attempts = kMaxAttempts,
                  .cancel_requested = cancel_requested};
}

TEST(JobStateMachine, RunEndFollowsTheTableForEveryStatusOutcomeCancelAndAttempts) {
  QuietLog quiet;
  int checked = 0;
  for (S status : kStatuses) {
    for (O outcome : kOutcomes) {
      for (bool cancel_requested : {false, true}) {
        for (Attempts attempts : kAttemptCases) {
          SCOPED_TRACE(std::string(JobStatusName(status)) + " " + RunOutcomeName(outcome) +
                       (cancel_requested ? " cancel_requested " : " ") + Name(attempts));
          auto r = TransitionOnRunEnd(StateWith(status, Count(attempts), cancel_requested), outcome,
                                      kNow, kRetryAt);
          ++checked;
          if (status != S::kRunning) {
            ASSERT_FALSE(r.ok());
            EXPECT_EQ(Code::kInternal, r.status().code());
            continue;
          }
          const RunEndRow* row = FindRow(outcome, cancel_requested, attempts);
          ASSERT_NE(nullptr, row) << "no row in the table";
          ASSERT_TRUE(r.ok()) << r.status().ToString();
          EXPECT_EQ(row->to, r->to);
          EXPECT_EQ(row->attempt_spent, r->attempt_spent);
          switch (row->not_before) {
            case NotBefore::kUnchanged:
              EXPECT_EQ(std::nullopt, r->not_before);
              break;
            case NotBefore::kNow:
              EXPECT_EQ(kNow, r->not_before);
              break;
            case NotBefore::kRetryAt:
              EXPECT_EQ(kRetryAt, r->not_before);
              break;
          }
        }
      }
    }
  }
  EXPECT_EQ(5 * 8 * 2 * 3, checked);
}

TEST(JobStateMachine, AnInterruptedRunIsRunnableAtOnceUnlessALaterStartIsAsked) {
  JobState running = StateWith(S::kRunning, 1, false);
  for (int64_t retry : {int64_t{0}, kNow - 1, kNow}) {
    auto r = TransitionOnRunEnd(running, O::kInterrupted, kNow, retry);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(std::optional<int64_t>(kNow), r->not_before) << retry;
  }
  EXPECT_EQ(8 * 2 * 3, static_cast<int>(std::size(kRunEndTable)));
}

TEST(JobStateMachine, ClaimActsOnQueuedOnlyAndStartsTheNextAttempt) {
  QuietLog quiet;
  for (S status : kStatuses) {
    SCOPED_TRACE(JobStatusName(status));
    auto r = TransitionOnClaim(StateWith(status, 1, false));
    if (status == S::kQueued) {
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(S::kRunning, r->to);
      EXPECT_EQ(2, r->attempts);
    } else {
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(Code::kInternal, r.status().code());
    }
  }
}

TEST(JobStateMachine, CancelFollowsTheTableForEveryStatusAndCancelRequested) {
  struct Row {
    S from;
    bool cancel_requested;
    std::optional<CancelEffect> effect;  // nullopt: kConflict
    S to;
  };
  constexpr Row kTable[] = {
      {S::kQueued, false, CancelEffect::kCancelled, S::kCancelled},
      {S::kQueued, true, CancelEffect::kCancelled, S::kCancelled},
      {S::kRunning, false, CancelEffect::kRunningSignalNeeded, S::kRunning},
      {S::kRunning, true, CancelEffect::kAlreadyRequested, S::kRunning},
      {S::kSucceeded, false, std::nullopt, S::kSucceeded},
      {S::kSucceeded, true, std::nullopt, S::kSucceeded},
      {S::kFailed, false, std::nullopt, S::kFailed},
      {S::kFailed, true, std::nullopt, S::kFailed},
      {S::kCancelled, false, std::nullopt, S::kCancelled},
      {S::kCancelled, true, std::nullopt, S::kCancelled},
  };
  for (const Row& row : kTable) {
    SCOPED_TRACE(std::string(JobStatusName(row.from)) +
                 (row.cancel_requested ? " cancel_requested" : ""));
    auto r = TransitionOnCancel(StateWith(row.from, 1, row.cancel_requested));
    if (!row.effect) {
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(Code::kConflict, r.status().code());
      EXPECT_EQ(std::string("job 7 is already ") + JobStatusName(row.from), r.status().message());
      continue;
    }
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(*row.effect, r->effect);
    EXPECT_EQ(row.to, r->to);
    EXPECT_TRUE(r->cancel_requested);
  }
}

TEST(JobStateMachine, RetryRequeuesFailedAndCancelledNowWithAttemptsReset) {
  for (S status : kStatuses) {
    for (bool cancel_requested : {false, true}) {
      SCOPED_TRACE(std::string(JobStatusName(status)) +
                   (cancel_requested ? " cancel_requested" : ""));
      auto r = TransitionOnRetry(StateWith(status, kMaxAttempts, cancel_requested), kNow);
      if (status == S::kFailed || status == S::kCancelled) {
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        EXPECT_EQ(S::kQueued, r->to);
        EXPECT_EQ(0, r->attempts);
        EXPECT_EQ(kNow, r->not_before);
        EXPECT_FALSE(r->cancel_requested);
      } else {
        ASSERT_FALSE(r.ok());
        EXPECT_EQ(Code::kConflict, r.status().code());
        EXPECT_NE(std::string::npos,
                  r.status().message().find("only failed or cancelled jobs can be retried"));
      }
    }
  }
}

TEST(JobStateMachine, RefusedTransitionNamesTheJobTheEventAndBothStatuses) {
  QuietLog quiet;
  auto r = TransitionOnRunEnd(StateWith(S::kSucceeded, 1, false), O::kTransient, kNow, kRetryAt);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(Code::kInternal, r.status().code());
  EXPECT_EQ("job 7: run end from succeeded to queued is outside the state machine",
            r.status().message());
}

TEST(JobStateMachine, StateOfCopiesWhatTheMachineReads) {
  Job job;
  job.id = 42;
  job.status = S::kRunning;
  job.attempts = 2;
  job.max_attempts = 5;
  job.cancel_requested = true;
  JobState s = StateOf(job);
  EXPECT_EQ(42, s.id);
  EXPECT_EQ(S::kRunning, s.status);
  EXPECT_EQ(2, s.attempts);
  EXPECT_EQ(5, s.max_attempts);
  EXPECT_TRUE(s.cancel_requested);
}

}  // namespace
}  // namespace orch::test
