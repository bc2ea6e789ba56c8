// Reading a file together with the verdict whether the reading user may
// trust it: a file that someone else could have written must not decide
// where the user's secrets go (the client's ./orchestrator.toml, a token
// found by default).
#pragma once

#include <sys/types.h>

#include <string>

#include "base/status.h"

namespace orch {

struct FileText {
  std::string text;
  // Why `uid` should not trust the content, for people: "owned by uid 1000,
  // not you or root", "writable by its group (mode 0664)"; "" when only
  // `uid` or root can have written it.
  std::string distrust;
};

enum class Symlinks { kFollow, kRefuse };

// Opens `path`, checks the opened file with fstat (so the verdict is about
// the very bytes read, not a file swapped in after a stat), and reads it.
// Trusted means owned by `uid` or root and writable by neither group nor
// others. With Symlinks::kRefuse a final symlink is not followed and only a
// regular file is read (a FIFO would block). Fails with kNotFound when there
// is no file, kPermission with a reason for people ("a symbolic link", "not
// a regular file") when refused, and FromErrno's status otherwise.
Result<FileText> ReadFileForUser(const std::string& path, uid_t uid, Symlinks symlinks);

}  // namespace orch
