// Validation of a POST /jobs body (SPEC §7): every error names the field.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "store/job.h"

namespace orch {

// Parses and validates a submit body into a JobSpec. On error returns
// kInvalidArgument with a message that starts with the field's name
// ("argv[1]: must be a string"). Never throws.
Result<JobSpec> ParseJobSpec(const std::string& body, int64_t default_max_attempts);

}  // namespace orch
