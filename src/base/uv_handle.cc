#include "base/uv_handle.h"

namespace orch {

Status FromUv(const std::string& what, int rc) {
  Code code = Code::kIo;
  if (rc == UV_EADDRINUSE || rc == UV_EEXIST) code = Code::kConflict;
  if (rc == UV_EINVAL) code = Code::kInvalidArgument;
  if (rc == UV_ENOENT) code = Code::kNotFound;
  return Status(code, what + ": " + uv_strerror(rc));
}

}  // namespace orch
