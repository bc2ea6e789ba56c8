#include "store/postgres/pg_conn.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <regex>

#include "base/log.h"

namespace orch {
namespace {

int64_t MonoMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

std::string FirstLine(const char* text) {
  std::string s = text ? text : "";
  auto nl = s.find('\n');
  if (nl != std::string::npos) s.resize(nl);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

Code CodeOfSqlState(const std::string& state) {
  if (state == "40001" || state == "40P01" || state == "55P03" || state == "57014") {
    return Code::kBusy;
  }
  if (state.rfind("53", 0) == 0) return Code::kFull;
  if (state == "25006") return Code::kReadOnly;
  if (state.rfind("08", 0) == 0 || state == "57P01" || state == "57P02" || state == "57P03") {
    return Code::kUnavailable;
  }
  if (state.rfind("28", 0) == 0) return Code::kPermission;
  if (state == "23505") return Code::kConflict;  // unique_violation
  if (state == "3D000" || state == "42P01") return Code::kNotFound;
  if (state == "XX001" || state == "XX002") return Code::kCorrupt;
  return Code::kIo;
}

}  // namespace

Status FromPg(PGconn* conn, const PGresult* res, const std::string& what) {
  const char* state = res ? pq::PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  std::string message = FirstLine(res ? pq::PQresultErrorMessage(res) : nullptr);
  if (message.empty()) message = FirstLine(conn ? pq::PQerrorMessage(conn) : nullptr);
  Code code = Code::kIo;
  if (state != nullptr) {
    code = CodeOfSqlState(state);
  } else if (conn == nullptr || pq::PQstatus(conn) != CONNECTION_OK) {
    code = Code::kUnavailable;
  }
  if (message.empty()) message = "unknown PostgreSQL error";
  if (state != nullptr) message += std::string(" (SQLSTATE ") + state + ")";
  return Status(code, what.empty() ? message : what + ": " + message);
}

int64_t PgResult::affected() const {
  const char* n = pq::PQcmdTuples(res_.get());
  return (n && *n) ? std::strtoll(n, nullptr, 10) : 0;
}

int64_t PgResult::Int(int row, int col) const {
  if (IsNull(row, col)) return 0;
  return std::strtoll(pq::PQgetvalue(res_.get(), row, col), nullptr, 10);
}

std::string PgResult::Text(int row, int col) const {
  return std::string(pq::PQgetvalue(res_.get(), row, col),
                     static_cast<size_t>(pq::PQgetlength(res_.get(), row, col)));
}

std::optional<int64_t> PgResult::OptInt(int row, int col) const {
  if (IsNull(row, col)) return std::nullopt;
  return Int(row, col);
}

PgParams& PgParams::Add(const std::optional<double>& v) {
  if (!v) {
    values_.push_back(std::nullopt);
  } else {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.17g", *v);
    values_.push_back(std::string(buf));
  }
  return *this;
}

std::optional<double> PgResult::OptDouble(int row, int col) const {
  if (IsNull(row, col)) return std::nullopt;
  return std::strtod(pq::PQgetvalue(res_.get(), row, col), nullptr);
}

std::optional<std::string> PgResult::OptText(int row, int col) const {
  if (IsNull(row, col)) return std::nullopt;
  return Text(row, col);
}

Result<std::unique_ptr<PgConn>> PgConn::Connect(const std::string& url,
                                                const PgConnOptions& options) {
  std::unique_ptr<PgConn> c(new PgConn(url, options));
  Status s = c->Open();
  if (!s.ok()) return s;
  return c;
}

PgConn::~PgConn() {
  if (conn_) pq::PQfinish(conn_);
}

Status PgConn::Open() {
  if (conn_) {
    pq::PQfinish(conn_);
    conn_ = nullptr;
  }
  prepared_.clear();
  // Not a server that is away: waiting would not bring the library.
  if (std::string error; !LoadLibpq(&error)) return Status(Code::kNotFound, error);
  // A URL libpq cannot even parse is the config's fault: no point retrying.
  char* parse_error = nullptr;
  if (PQconninfoOption* parsed = pq::PQconninfoParse(url_.c_str(), &parse_error)) {
    pq::PQconninfoFree(parsed);
  } else {
    std::string why = parse_error ? FirstLine(parse_error) : "out of memory";
    pq::PQfreemem(parse_error);
    // libpq quotes the offending token, which may be a password.
    why = std::regex_replace(why, std::regex("\"[^\"]*\""), "\"***\"");
    return Status(Code::kInvalidArgument, "store.url is not a valid PostgreSQL URL: " + why);
  }
  const std::string connect_timeout = std::to_string(options_.connect_timeout_s);
  // Ours first: with expand_dbname the URL comes last and wins.
  const char* keys[] = {"application_name", "connect_timeout", "keepalives",
                        "keepalives_idle",  "keepalives_interval", "keepalives_count",
                        "tcp_user_timeout", "dbname", nullptr};
  const char* values[] = {"orchestrator", connect_timeout.c_str(), "1", "5", "2", "3", "15000",
                          url_.c_str(), nullptr};
  conn_ = pq::PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (conn_ == nullptr) return Status(Code::kInternal, "out of memory connecting to PostgreSQL");
  pq::PQsetNoticeProcessor(
      conn_,
      [](void*, const char* text) {
        log::Debug("PostgreSQL notice", {{"text", FirstLine(text)}});
      },
      nullptr);
  if (pq::PQstatus(conn_) != CONNECTION_OK) {
    std::string message = FirstLine(pq::PQerrorMessage(conn_));
    Code code = Code::kUnavailable;
    // A login that needed or used a password and failed was refused (the
    // message may be translated; these flags are not).
    if (pq::PQconnectionNeedsPassword(conn_) || pq::PQconnectionUsedPassword(conn_) ||
        message.find("password authentication failed") != std::string::npos ||
        message.find("no pg_hba.conf entry") != std::string::npos ||
        message.find("role \"") != std::string::npos) {
      code = Code::kPermission;
    } else if (message.find("database \"") != std::string::npos &&
               message.find("does not exist") != std::string::npos) {
      code = Code::kNotFound;
    } else if (message.find("invalid") != std::string::npos ||
               message.find("missing \"=\"") != std::string::npos) {
      code = Code::kInvalidArgument;
    }
    pq::PQfinish(conn_);
    conn_ = nullptr;
    return Status(code, "cannot connect to PostgreSQL: " + message);
  }
  return Configure();
}

Status PgConn::Configure() {
  // Every statement, lock wait included, is bounded; a transaction left
  // open by a stuck client does not hold its locks for ever.
  return Script("SET statement_timeout = " + std::to_string(options_.statement_timeout_ms) +
                "; SET idle_in_transaction_session_timeout = " +
                std::to_string(std::max<int64_t>(options_.statement_timeout_ms * 4, 10000)) +
                "; SET client_min_messages = warning");
}

Status PgConn::EnsureConnected() {
  if (connected()) return Status::Ok();
  int64_t now = MonoMs();
  if (now < retry_at_ms_ && last_connect_error_) {
    return Status(Code::kUnavailable, last_connect_error_->message() + " (next try in " +
                                          std::to_string(retry_at_ms_ - now) + " ms)");
  }
  Status s = Open();
  if (s.ok()) {
    ++reconnects_;
    backoff_ms_ = 0;
    last_connect_error_.reset();
    return s;
  }
  backoff_ms_ = backoff_ms_ == 0 ? 100 : std::min<int64_t>(backoff_ms_ * 2, 5000);
  retry_at_ms_ = now + backoff_ms_;
  last_connect_error_ = Status(Code::kUnavailable, s.message());
  return *last_connect_error_;
}

Result<PgResult> PgConn::Query(const std::string& sql, const PgParams& params) {
  if (!connected()) {
    // Never reconnect in the middle of a transaction: it is gone.
    if (txn_depth_ > 0 || in_group_ || conn_ == nullptr) {
      return Status(Code::kUnavailable, "the connection to PostgreSQL was lost");
    }
    ORCH_RETURN_IF_ERROR(EnsureConnected());
  }
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    std::string name = "s" + std::to_string(++next_name_);
    PgResult prep(pq::PQprepare(conn_, name.c_str(), sql.c_str(), 0, nullptr));
    if (pq::PQresultStatus(prep.raw()) != PGRES_COMMAND_OK) return FromPg(conn_, prep.raw(), "");
    it = prepared_.emplace(sql, name).first;
  }
  const auto& vals = params.values();
  std::vector<const char*> ptrs(vals.size());
  for (size_t i = 0; i < vals.size(); ++i) ptrs[i] = vals[i] ? vals[i]->c_str() : nullptr;
  PgResult res(pq::PQexecPrepared(conn_, it->second.c_str(), static_cast<int>(ptrs.size()),
                                  ptrs.data(), nullptr, nullptr, 0));
  ExecStatusType st = pq::PQresultStatus(res.raw());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    Status failed = FromPg(conn_, res.raw(), "");
    NoteFailure(failed);
    return failed;
  }
  return res;
}

void PgConn::NoteFailure(const Status& failed) {
  // Outside any savepoint of its own, a failed statement aborts the group's
  // whole transaction: nothing after it may run, and it must not commit.
  if (in_group_ && !group_lost_ && txn_depth_ <= 1 && conn_ != nullptr &&
      pq::PQtransactionStatus(conn_) != PQTRANS_INTRANS) {
    group_lost_ = failed;
  }
}

Status PgConn::Script(const std::string& sql) {
  if (conn_ == nullptr) return Status(Code::kUnavailable, "not connected to PostgreSQL");
  PgResult res(pq::PQexec(conn_, sql.c_str()));
  ExecStatusType st = pq::PQresultStatus(res.raw());
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    Status failed = FromPg(conn_, res.raw(), "");
    NoteFailure(failed);
    return failed;
  }
  return Status::Ok();
}

Status PgConn::CommitTop() {
  if (conn_ == nullptr) return Status(Code::kUnavailable, "not connected to PostgreSQL");
  // COMMIT of an aborted transaction "succeeds" with a ROLLBACK: never take
  // that for a commit.
  bool aborted = pq::PQtransactionStatus(conn_) == PQTRANS_INERROR;
  PgResult res(pq::PQexec(conn_, "COMMIT"));
  ExecStatusType st = pq::PQresultStatus(res.raw());
  if (st != PGRES_COMMAND_OK) return FromPg(conn_, res.raw(), "COMMIT");
  if (aborted || std::strcmp(pq::PQcmdStatus(res.raw()), "COMMIT") != 0) {
    return Status(Code::kIo, "the transaction was rolled back (a statement in it failed)");
  }
  return Status::Ok();
}

Status PgConn::InGroup(const std::function<void()>& ops) {
  PgTransaction txn(this);
  ORCH_RETURN_IF_ERROR(txn.Begin());
  in_group_ = true;
  group_lost_.reset();
  ops();
  in_group_ = false;
  if (group_lost_) {
    Status lost = *group_lost_;
    group_lost_.reset();
    return Status(lost.code(), "group transaction rolled back: " + lost.message());
  }
  return txn.Commit();
}

Status PgConn::InSnapshot(const std::function<void()>& ops) {
  ORCH_RETURN_IF_ERROR(EnsureConnected());
  ORCH_RETURN_IF_ERROR(Script("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"));
  ++txn_depth_;
  ops();
  --txn_depth_;
  Status s = Script("COMMIT");
  if (!s.ok() && conn_ && pq::PQtransactionStatus(conn_) != PQTRANS_IDLE) Script("ROLLBACK").ok();
  return s;
}

PgTransaction::~PgTransaction() { Rollback(); }

Status PgTransaction::Begin() {
  PGconn* raw = conn_->conn_;
  PGTransactionStatusType ts = raw ? pq::PQtransactionStatus(raw) : PQTRANS_UNKNOWN;
  if (ts == PQTRANS_INTRANS) {
    if (conn_->group_lost_) return *conn_->group_lost_;
    name_ = "sp" + std::to_string(++conn_->next_name_);
    ORCH_RETURN_IF_ERROR(conn_->Script("SAVEPOINT " + name_));
    open_ = true;
    ++conn_->txn_depth_;
    savepoint_ = true;
    return Status::Ok();
  }
  if (ts == PQTRANS_INERROR) {
    return conn_->group_lost_ ? *conn_->group_lost_
                              : Status(Code::kIo, "the transaction is aborted");
  }
  if (conn_->in_group_) {
    // The group's own transaction ended underneath it (connection lost).
    conn_->group_lost_ = Status(Code::kUnavailable, "the group transaction ended unexpectedly");
    return *conn_->group_lost_;
  }
  ORCH_RETURN_IF_ERROR(conn_->EnsureConnected());
  ORCH_RETURN_IF_ERROR(conn_->Script("BEGIN"));
  open_ = true;
  ++conn_->txn_depth_;
  return Status::Ok();
}

Status PgTransaction::Commit() {
  if (!savepoint_ && conn_->group_lost_) return *conn_->group_lost_;
  if (!savepoint_) {
    // The transaction is over after a COMMIT, whether it committed or not.
    Status s = conn_->CommitTop();
    open_ = false;
    --conn_->txn_depth_;
    return s;
  }
  Status s = conn_->Script("RELEASE SAVEPOINT " + name_);
  if (s.ok()) {
    open_ = false;
    --conn_->txn_depth_;
    return s;
  }
  if (savepoint_ && !conn_->group_lost_) conn_->group_lost_ = s;
  return s;
}

void PgTransaction::Rollback() {
  if (!open_) return;
  open_ = false;
  --conn_->txn_depth_;
  PGconn* raw = conn_->conn_;
  if (raw == nullptr || pq::PQstatus(raw) != CONNECTION_OK) {
    if (savepoint_ && !conn_->group_lost_) {
      conn_->group_lost_ = Status(Code::kUnavailable, "the connection to PostgreSQL was lost");
    }
    return;
  }
  if (savepoint_) {
    Status s = conn_->Script("ROLLBACK TO SAVEPOINT " + name_ + "; RELEASE SAVEPOINT " + name_);
    if (!s.ok() && !conn_->group_lost_) conn_->group_lost_ = s;
    return;
  }
  conn_->Script("ROLLBACK").ok();
}

}  // namespace orch
