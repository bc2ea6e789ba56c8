#include "base/trusted_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "base/unique_fd.h"

namespace orch {
namespace {

std::string Mode(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

std::string Distrust(const struct stat& st, uid_t uid) {
  if (st.st_uid != uid && st.st_uid != 0) {
    return "owned by uid " + std::to_string(st.st_uid) + ", not you or root";
  }
  if ((st.st_mode & S_IWOTH) != 0) return "writable by others (mode " + Mode(st.st_mode) + ")";
  if ((st.st_mode & S_IWGRP) != 0) return "writable by its group (mode " + Mode(st.st_mode) + ")";
  return "";
}

}  // namespace

Result<FileText> ReadFileForUser(const std::string& path, uid_t uid, Symlinks symlinks) {
  int flags = O_RDONLY | O_CLOEXEC;
  // O_NONBLOCK: opening a FIFO planted under the name must not hang us; it
  // is refused below as not a regular file, and a regular file ignores it.
  if (symlinks == Symlinks::kRefuse) flags |= O_NOFOLLOW | O_NONBLOCK;
  UniqueFd fd(open(path.c_str(), flags));
  if (!fd.valid()) {
    if (errno == ELOOP && symlinks == Symlinks::kRefuse) {
      return Result<FileText>(Code::kPermission, "a symbolic link");
    }
    return FromErrno(path);
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return FromErrno(path);
  if (symlinks == Symlinks::kRefuse && !S_ISREG(st.st_mode)) {
    return Result<FileText>(Code::kPermission, "not a regular file");
  }
  FileText out;
  out.distrust = Distrust(st, uid);
  char buf[8192];
  while (true) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      return FromErrno(path);
    }
    out.text.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace orch
