// The job state machine of SPEC §4 (STYLE §7), shared by every JobStore
// backend: the backend asks it what a claim, a run's end, a cancel or a
// retry does to a job, then persists the answer with one guarded write. No
// backend decides a status itself. Pure functions: no I/O, no clock, any
// thread. The table is drawn in docs/architecture.md.
//
// Every decision is checked in one place: the event must act on the job's
// status (claim on queued, run end on running, ...) and the move must be in
// TransitionAllowed's table. Anything else is a bug in the caller or the
// rules: it is logged at error level with the job, the event and both
// statuses, and returned as kInternal — never written. kConflict (cancel a
// finished job, retry one that is not failed or cancelled) is the client's
// mistake and is not logged.
#pragma once

#include <cstdint>
#include <optional>

#include "base/status.h"
#include "store/job.h"

namespace orch {

// The one transition table: whether a job may move from `from` to `to`.
bool TransitionAllowed(JobStatus from, JobStatus to);

// What the state machine reads of a job.
struct JobState {
  int64_t id = 0;  // only for messages
  JobStatus status = JobStatus::kQueued;
  int64_t attempts = 0;  // attempts started, counting a running one
  int64_t max_attempts = 0;
  bool cancel_requested = false;
};
JobState StateOf(const Job& job);

// Claim acts on queued jobs: → running, and the attempt it starts.
struct ClaimTransition {
  JobStatus to = JobStatus::kRunning;
  int64_t attempts = 0;  // the job's new attempts: also the new run's attempt number
};
Result<ClaimTransition> TransitionOnClaim(const JobState& job);

// Reattach acts on a queued job found with an open run whose process still
// lives (the I1 sweep): → running with that run, attempts = the run's attempt.
Result<ClaimTransition> TransitionOnReattach(const JobState& job, int64_t run_attempt);

// Run end acts on running jobs, whose run closed with `outcome` (RunEnd in
// job_store.h):
//   succeeded → succeeded; failed, spawn_failed → failed; cancelled → cancelled;
//   transient, timeout, lost → queued at retry_not_before, or failed when
//     attempts >= max_attempts; interrupted → queued at now_ms (or at
//     retry_not_before when later), attempt given back;
//   cancel_requested → cancelled whatever the outcome.
struct RunEndTransition {
  JobStatus to = JobStatus::kFailed;
  bool attempt_spent = true;          // false: the job's attempts go back down by one
  std::optional<int64_t> not_before;  // set exactly when `to` is queued
};
Result<RunEndTransition> TransitionOnRunEnd(const JobState& job, RunOutcome outcome, int64_t now_ms,
                                            int64_t retry_not_before);

enum class CancelEffect {
  kCancelled,            // was queued: now cancelled
  kRunningSignalNeeded,  // running: set cancel_requested; the supervisor stops the run
  kAlreadyRequested,     // running with cancel_requested already set: write nothing
};
// Cancel acts on queued and running jobs; kConflict for terminal ones.
struct CancelTransition {
  CancelEffect effect = CancelEffect::kCancelled;
  JobStatus to = JobStatus::kCancelled;  // the status after the cancel
  bool cancel_requested = true;          // the flag after the cancel
};
Result<CancelTransition> TransitionOnCancel(const JobState& job);

// Retry acts on failed and cancelled jobs (kConflict otherwise): back to
// queued, runnable now, attempts reset and cancel_requested cleared.
struct RetryTransition {
  JobStatus to = JobStatus::kQueued;
  int64_t attempts = 0;
  int64_t not_before = 0;
  bool cancel_requested = false;
};
Result<RetryTransition> TransitionOnRetry(const JobState& job, int64_t now_ms);

}  // namespace orch
