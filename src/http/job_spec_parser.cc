#include "http/job_spec_parser.h"

#include <nlohmann/json.hpp>

namespace orch {
namespace {

using nlohmann::json;

bool HasNul(const std::string& s) { return s.find('\0') != std::string::npos; }

Status Bad(const std::string& field, const std::string& what) {
  return Status(Code::kInvalidArgument, field + ": " + what);
}

Result<std::optional<std::string>> OptionalString(const json& v, const std::string& field,
                                                  size_t max_len) {
  if (v.is_null()) return std::optional<std::string>();
  if (!v.is_string()) return Bad(field, "must be a string or null");
  const auto& s = v.get_ref<const std::string&>();
  if (s.empty()) return Bad(field, "must not be empty");
  if (s.size() > max_len) return Bad(field, "longer than " + std::to_string(max_len) + " bytes");
  if (HasNul(s)) return Bad(field, "must not contain NUL bytes");
  return std::optional<std::string>(s);
}

Result<int64_t> Integer(const json& v, const std::string& field, int64_t min, int64_t max) {
  if (!v.is_number_integer()) return Bad(field, "must be an integer");
  int64_t n = v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)
                  ? INT64_MAX
                  : v.get<int64_t>();
  if (n < min || n > max) {
    return Bad(field, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  }
  return n;
}

}  // namespace

Result<JobSpec> ParseJobSpec(const std::string& body, int64_t default_max_attempts) {
  json doc = json::parse(body, nullptr, false);
  if (doc.is_discarded()) return Status(Code::kInvalidArgument, "body: not valid JSON");
  if (!doc.is_object()) return Status(Code::kInvalidArgument, "body: must be a JSON object");
  JobSpec spec;
  spec.max_attempts = default_max_attempts;
  bool have_argv = false;
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "argv") {
      if (!v.is_array()) return Bad("argv", "must be an array of strings");
      if (v.empty()) return Bad("argv", "must not be empty");
      if (v.size() > 65536) return Bad("argv", "has more than 65536 elements");
      for (size_t i = 0; i < v.size(); ++i) {
        std::string f = "argv[" + std::to_string(i) + "]";
        if (!v[i].is_string()) return Bad(f, "must be a string");
        const auto& s = v[i].get_ref<const std::string&>();
        if (HasNul(s)) return Bad(f, "must not contain NUL bytes");
        if (i == 0 && s.empty()) return Bad(f, "must not be empty");
        spec.argv.push_back(s);
      }
      have_argv = true;
    } else if (key == "name") {
      auto s = OptionalString(v, "name", 256);
      if (!s.ok()) return s.status();
      spec.name = s->value_or("");
    } else if (key == "env") {
      if (v.is_null()) continue;
      if (!v.is_object()) return Bad("env", "must be an object of strings");
      for (auto e = v.begin(); e != v.end(); ++e) {
        std::string f = "env." + e.key();
        if (e.key().empty() || e.key().find('=') != std::string::npos || HasNul(e.key())) {
          return Bad(f, "invalid variable name");
        }
        if (!e.value().is_string()) return Bad(f, "must be a string");
        const auto& s = e.value().get_ref<const std::string&>();
        if (HasNul(s)) return Bad(f, "must not contain NUL bytes");
        spec.env[e.key()] = s;
      }
    } else if (key == "cwd") {
      auto s = OptionalString(v, "cwd", 4096);
      if (!s.ok()) return s.status();
      if (*s && (*s)->front() != '/') return Bad("cwd", "must be an absolute path");
      spec.cwd = s->value_or("");
    } else if (key == "priority") {
      auto n = Integer(v, "priority", -1000000, 1000000);
      if (!n.ok()) return n.status();
      spec.priority = *n;
    } else if (key == "serial_key") {
      auto s = OptionalString(v, "serial_key", 256);
      if (!s.ok()) return s.status();
      spec.serial_key = *s;
    } else if (key == "timeout_s") {
      if (v.is_null()) continue;
      auto n = Integer(v, "timeout_s", 1, 31536000);
      if (!n.ok()) return n.status();
      spec.timeout_s = *n;
    } else if (key == "memory_max" || key == "pids_max" || key == "stall_timeout_s") {
      if (v.is_null()) continue;
      // memory.max below a few pages only makes the OOM killer fire at exec.
      int64_t min = key == "memory_max" ? 65536 : key == "pids_max" ? 1 : 0;
      auto n = Integer(v, key, min, key == "stall_timeout_s" ? 31536000 : INT64_MAX);
      if (!n.ok()) return n.status();
      (key == "memory_max" ? spec.memory_max
       : key == "pids_max" ? spec.pids_max
                           : spec.stall_timeout_s) = *n;
    } else if (key == "cpu_max") {
      if (v.is_null()) continue;
      if (!v.is_number()) return Bad("cpu_max", "must be a number of cores");
      double cores = v.get<double>();
      if (!(cores >= 0.01 && cores <= 65536)) return Bad("cpu_max", "must be between 0.01 and 65536");
      spec.cpu_max = cores;
    } else if (key == "max_attempts") {
      auto n = Integer(v, "max_attempts", 1, 1000);
      if (!n.ok()) return n.status();
      spec.max_attempts = *n;
    } else if (key == "idempotency_key") {
      auto s = OptionalString(v, "idempotency_key", 256);
      if (!s.ok()) return s.status();
      spec.idempotency_key = *s;
    } else {
      return Bad(key, "unknown field");
    }
  }
  if (!have_argv) return Bad("argv", "is required");
  return spec;
}

}  // namespace orch
