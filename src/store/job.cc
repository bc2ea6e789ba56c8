#include "store/job.h"

namespace orch {
namespace {

constexpr const char* kStatusNames[] = {"queued", "running", "succeeded", "failed", "cancelled"};
constexpr const char* kOutcomeNames[] = {"succeeded", "failed",      "transient",   "timeout",
                                         "cancelled", "lost",        "interrupted", "spawn_failed"};

}  // namespace

const char* JobStatusName(JobStatus s) { return kStatusNames[static_cast<int>(s)]; }

bool ParseJobStatus(const std::string& text, JobStatus* out) {
  for (int i = 0; i < 5; ++i) {
    if (text == kStatusNames[i]) {
      *out = static_cast<JobStatus>(i);
      return true;
    }
  }
  return false;
}

bool IsTerminal(JobStatus s) {
  return s == JobStatus::kSucceeded || s == JobStatus::kFailed || s == JobStatus::kCancelled;
}

const char* RunOutcomeName(RunOutcome o) { return kOutcomeNames[static_cast<int>(o)]; }

bool ParseRunOutcome(const std::string& text, RunOutcome* out) {
  for (int i = 0; i < 8; ++i) {
    if (text == kOutcomeNames[i]) {
      *out = static_cast<RunOutcome>(i);
      return true;
    }
  }
  return false;
}

}  // namespace orch
