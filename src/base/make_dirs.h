// mkdir -p for the daemon's state (SPEC §8: missing state directories are
// created with mode 0750).
#pragma once

#include <string>

#include "base/status.h"

namespace orch {

// Creates `dir` and any missing parents, each new one with mode 0750.
// Existing directories are left as they are.
Status MakeDirs(const std::string& dir);

// MakeDirs for the directory that holds `path` (a file to be created).
Status MakeParentDirs(const std::string& path);

}  // namespace orch
