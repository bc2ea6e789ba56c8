// Errors as values (STYLE §3): Status for operations without a result,
// Result<T> for those with one. Foreign conventions are converted in one
// place each: FromErrno here, FromSqlite in the store, FromUv in uv_util.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace orch {

enum class Code {
  kOk = 0,
  kInvalidArgument,  // caller's input is wrong
  kNotFound,
  kConflict,         // state does not allow the operation (e.g. retry a running job)
  kGuardMissed,      // a compare-and-set UPDATE matched no row
  kBusy,             // database locked past busy_timeout
  kFull,             // disk or database full
  kReadOnly,
  kPermission,       // refused: not ours to touch (e.g. a swapped file)
  kCorrupt,
  kIo,               // other I/O or OS error
  kUnavailable,      // not ready / shutting down
  kInternal,
};

const char* CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return Status(); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "busy: database is locked" style text for logs and API errors.
  std::string ToString() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

// errno (captured by the caller or read now) turned into a Status:
// "<what>: <strerror>". ENOSPC → kFull, EROFS → kReadOnly, ENOENT → kNotFound.
Status FromErrno(const std::string& what, int err);
Status FromErrno(const std::string& what);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT
  Result(Code code, std::string message) : v_(Status(code, std::move(message))) {}

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace orch

#define ORCH_CONCAT_INNER(a, b) a##b
#define ORCH_CONCAT(a, b) ORCH_CONCAT_INNER(a, b)

// Returns the Status of `expr` from the enclosing function when it is not ok.
#define ORCH_RETURN_IF_ERROR(expr)      \
  do {                                  \
    ::orch::Status orch_s_ = (expr);    \
    if (!orch_s_.ok()) return orch_s_;  \
  } while (0)

// `lhs = value of Result expr`, or returns its Status.
#define ORCH_ASSIGN_OR_RETURN(lhs, expr)                                       \
  auto ORCH_CONCAT(orch_r_, __LINE__) = (expr);                          \
  if (!ORCH_CONCAT(orch_r_, __LINE__).ok())                              \
    return ORCH_CONCAT(orch_r_, __LINE__).status();                      \
  lhs = std::move(ORCH_CONCAT(orch_r_, __LINE__).value())
