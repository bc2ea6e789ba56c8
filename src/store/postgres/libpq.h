// libpq, loaded with dlopen when a PostgreSQL store is first opened instead
// of being linked: a daemon on the default SQLite store never maps libpq and
// the twenty libraries it pulls in (TLS, Kerberos, LDAP), about 0.9 MiB of
// its idle resident memory (bench/README.md).
//
// The store calls them as pq::PQexec(...) and so on: libpq's own names,
// qualified so that no call can reach the unlinked global ones.
// PgConn::Open() calls LoadLibpq() before anything else.
#pragma once

#include <libpq-fe.h>

#include <string>
#include <utility>

// Every libpq function the store uses.
// clang-format off
#define ORCH_LIBPQ_FUNCTIONS(X) \
  X(PQclear) X(PQcmdStatus) X(PQcmdTuples) X(PQconnectdbParams) \
  X(PQconnectionNeedsPassword) X(PQconnectionUsedPassword) X(PQconninfoFree) \
  X(PQconninfoParse) X(PQconsumeInput) X(PQerrorMessage) X(PQexec) X(PQexecPrepared) \
  X(PQfinish) X(PQfreemem) X(PQgetisnull) X(PQgetlength) X(PQgetvalue) X(PQnotifies) \
  X(PQntuples) X(PQprepare) X(PQresultErrorField) X(PQresultErrorMessage) \
  X(PQresultStatus) X(PQsetNoticeProcessor) X(PQsocket) X(PQstatus) X(PQtransactionStatus)
// clang-format on

namespace orch {

// Loads libpq once (thread-safe). False, with *error saying why, when it
// cannot be loaded or lacks a function.
bool LoadLibpq(std::string* error);

namespace libpq {
struct Functions {
#define ORCH_LIBPQ_MEMBER(name) decltype(&::name) name = nullptr;
  ORCH_LIBPQ_FUNCTIONS(ORCH_LIBPQ_MEMBER)
#undef ORCH_LIBPQ_MEMBER
};
// The loaded functions; loads them first if need be, and aborts the
// process when that fails (only PgConn::Open may meet that, and it checks).
const Functions& Get();
}  // namespace libpq

namespace pq {
#define ORCH_LIBPQ_WRAPPER(name)                           \
  template <typename... Args>                              \
  inline auto name(Args&&... args) {                       \
    return libpq::Get().name(std::forward<Args>(args)...); \
  }
ORCH_LIBPQ_FUNCTIONS(ORCH_LIBPQ_WRAPPER)
#undef ORCH_LIBPQ_WRAPPER
}  // namespace pq

}  // namespace orch
