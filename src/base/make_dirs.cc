#include "base/make_dirs.h"

#include <sys/stat.h>

#include <cerrno>

namespace orch {

Status MakeDirs(const std::string& dir) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string part = dir.substr(0, pos);
    if (mkdir(part.c_str(), 0750) != 0 && errno != EEXIST) {
      return FromErrno("cannot create directory " + part);
    }
  }
  return Status::Ok();
}

Status MakeParentDirs(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos || slash == 0) return Status::Ok();
  return MakeDirs(path.substr(0, slash));
}

}  // namespace orch
