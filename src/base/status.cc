#include "base/status.h"

#include <cerrno>
#include <cstring>

namespace orch {

const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: return "invalid_argument";
    case Code::kNotFound: return "not_found";
    case Code::kConflict: return "conflict";
    case Code::kGuardMissed: return "guard_missed";
    case Code::kBusy: return "busy";
    case Code::kFull: return "full";
    case Code::kReadOnly: return "read_only";
    case Code::kPermission: return "permission";
    case Code::kCorrupt: return "corrupt";
    case Code::kIo: return "io";
    case Code::kUnavailable: return "unavailable";
    case Code::kInternal: return "internal";
  }
  return "unknown";
}

std::string Status::ToString() const {
  if (ok()) return "ok";
  return std::string(CodeName(code_)) + ": " + message_;
}

Status FromErrno(const std::string& what, int err) {
  Code code = Code::kIo;
  switch (err) {
    case ENOSPC:
    case EDQUOT: code = Code::kFull; break;
    case EROFS: code = Code::kReadOnly; break;
    case ENOENT: code = Code::kNotFound; break;
    case EINVAL: code = Code::kInvalidArgument; break;
    case EAGAIN: code = Code::kBusy; break;
    default: break;
  }
  return Status(code, what + ": " + std::strerror(err));
}

Status FromErrno(const std::string& what) { return FromErrno(what, errno); }

}  // namespace orch
