#include "store/job.h"

#include <nlohmann/json.hpp>

namespace orch {
namespace {

constexpr const char* kStatusNames[] = {"queued", "running", "succeeded", "failed", "cancelled"};
constexpr const char* kOutcomeNames[] = {"succeeded", "failed",      "transient",   "timeout",
                                         "cancelled", "lost",        "interrupted", "spawn_failed",
                                         "stalled"};
constexpr int kOutcomeCount = sizeof(kOutcomeNames) / sizeof(kOutcomeNames[0]);

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
  for (int i = 0; i < kOutcomeCount; ++i) {
    if (text == kOutcomeNames[i]) {
      *out = static_cast<RunOutcome>(i);
      return true;
    }
  }
  return false;
}

std::string ArgvToJson(const std::vector<std::string>& argv) {
  return nlohmann::json(argv).dump();
}

std::string EnvToJson(const std::map<std::string, std::string>& env) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : env) j[k] = v;
  return j.dump();
}

std::vector<std::string> ArgvFromJson(const std::string& text) {
  std::vector<std::string> out;
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) return out;
  for (const auto& e : j) {
    if (e.is_string()) out.push_back(e.get<std::string>());
  }
  return out;
}

std::map<std::string, std::string> EnvFromJson(const std::string& text) {
  std::map<std::string, std::string> out;
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return out;
  for (const auto& [k, v] : j.items()) {
    if (v.is_string()) out[k] = v.get<std::string>();
  }
  return out;
}

}  // namespace orch
