#include "store/job_state_machine.h"

#include <algorithm>
#include <initializer_list>
#include <string>

#include "base/log.h"

namespace orch {
namespace {

constexpr int kStatusCount = 5;

// kAllowed[from][to], rows and columns in JobStatus order:
// queued, running, succeeded, failed, cancelled.
constexpr bool kAllowed[kStatusCount][kStatusCount] = {
    {false, true, false, false, true},    // queued: claim, cancel
    {true, false, true, true, true},      // running: requeue, exit 0, failure, cancel
    {false, false, false, false, false},  // succeeded: final
    {true, false, false, false, false},   // failed: retry
    {true, false, false, false, false},   // cancelled: retry
};

// The one place a decided status change is checked: the event must act on
// a job in one of `acts_on`, and from → to must be in the table.
Status Check(const JobState& job, std::initializer_list<JobStatus> acts_on, JobStatus to,
             const char* event) {
  bool applies = std::find(acts_on.begin(), acts_on.end(), job.status) != acts_on.end();
  if (applies && TransitionAllowed(job.status, to)) return Status::Ok();
  log::Error("job transition outside the state machine refused (bug)",
             {{"job_id", job.id},
              {"event", event},
              {"from", JobStatusName(job.status)},
              {"to", JobStatusName(to)}});
  return Status(Code::kInternal, std::string("job ") + std::to_string(job.id) + ": " + event +
                                     " from " + JobStatusName(job.status) + " to " +
                                     JobStatusName(to) + " is outside the state machine");
}

// SPEC §4 for a job whose cancel was not requested.
JobStatus AfterRun(RunOutcome outcome, const JobState& job) {
  switch (outcome) {
    case RunOutcome::kSucceeded:
      return JobStatus::kSucceeded;
    case RunOutcome::kFailed:
    case RunOutcome::kSpawnFailed:
      return JobStatus::kFailed;
    case RunOutcome::kCancelled:
      return JobStatus::kCancelled;
    case RunOutcome::kTransient:
    case RunOutcome::kTimeout:
    case RunOutcome::kStalled:
    case RunOutcome::kLost:
      return job.attempts < job.max_attempts ? JobStatus::kQueued : JobStatus::kFailed;
    case RunOutcome::kInterrupted:
      return JobStatus::kQueued;
  }
  return JobStatus::kFailed;
}

}  // namespace

bool TransitionAllowed(JobStatus from, JobStatus to) {
  int f = static_cast<int>(from), t = static_cast<int>(to);
  if (f < 0 || f >= kStatusCount || t < 0 || t >= kStatusCount) return false;
  return kAllowed[f][t];
}

JobState StateOf(const Job& job) {
  return JobState{.id = job.id,
                  .status = job.status,
                  .attempts = job.attempts,
                  .max_attempts = job.max_attempts,
                  .cancel_requested = job.cancel_requested};
}

Result<ClaimTransition> TransitionOnClaim(const JobState& job) {
  ClaimTransition t{.to = JobStatus::kRunning, .attempts = job.attempts + 1};
  if (Status s = Check(job, {JobStatus::kQueued}, t.to, "claim"); !s.ok()) return s;
  return t;
}

Result<ClaimTransition> TransitionOnReattach(const JobState& job, int64_t run_attempt) {
  ClaimTransition t{.to = JobStatus::kRunning, .attempts = run_attempt};
  if (Status s = Check(job, {JobStatus::kQueued}, t.to, "reattach"); !s.ok()) return s;
  return t;
}

Result<RunEndTransition> TransitionOnRunEnd(const JobState& job, RunOutcome outcome, int64_t now_ms,
                                            int64_t retry_not_before) {
  RunEndTransition t;
  if (job.cancel_requested) {
    t.to = JobStatus::kCancelled;
  } else {
    t.to = AfterRun(outcome, job);
    // An interrupted run was stopped by the daemon, not by the job: the
    // attempt is given back and the job may run again at once.
    t.attempt_spent = outcome != RunOutcome::kInterrupted;
  }
  // An interrupted run may run again at once, unless the caller asks for a
  // later start (a host fault: the job waits so others can go first).
  if (t.to == JobStatus::kQueued) {
    t.not_before = t.attempt_spent ? retry_not_before : std::max(now_ms, retry_not_before);
  }
  if (Status s = Check(job, {JobStatus::kRunning}, t.to, "run end"); !s.ok()) return s;
  return t;
}

Result<CancelTransition> TransitionOnCancel(const JobState& job) {
  CancelTransition t;
  switch (job.status) {
    case JobStatus::kQueued:
      t = {.effect = CancelEffect::kCancelled,
           .to = JobStatus::kCancelled,
           .cancel_requested = true};
      if (Status s = Check(job, {JobStatus::kQueued}, t.to, "cancel"); !s.ok()) return s;
      return t;
    case JobStatus::kRunning:
      // The status stays running until the run ends (TransitionOnRunEnd
      // then says cancelled).
      t.effect = job.cancel_requested ? CancelEffect::kAlreadyRequested
                                      : CancelEffect::kRunningSignalNeeded;
      t.to = JobStatus::kRunning;
      t.cancel_requested = true;
      return t;
    case JobStatus::kSucceeded:
    case JobStatus::kFailed:
    case JobStatus::kCancelled:
      break;
  }
  return Status(Code::kConflict,
                "job " + std::to_string(job.id) + " is already " + JobStatusName(job.status));
}

Result<RetryTransition> TransitionOnRetry(const JobState& job, int64_t now_ms) {
  if (job.status != JobStatus::kFailed && job.status != JobStatus::kCancelled) {
    return Status(Code::kConflict, "job " + std::to_string(job.id) + " is " +
                                       JobStatusName(job.status) +
                                       "; only failed or cancelled jobs can be retried");
  }
  RetryTransition t{
      .to = JobStatus::kQueued, .attempts = 0, .not_before = now_ms, .cancel_requested = false};
  if (Status s = Check(job, {JobStatus::kFailed, JobStatus::kCancelled}, t.to, "retry"); !s.ok())
    return s;
  return t;
}

}  // namespace orch
