// Thin RAII layer over libpq used by the PostgreSQL store: one connection,
// its prepared statements, transactions that become savepoints inside a
// group, and reconnection with backoff. libpq errors become a Status in one
// place, FromPg(). Not thread-safe: a PgConn belongs to one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "store/postgres/libpq.h"

namespace orch {

// SQLSTATE → Code: serialization/deadlock/lock timeout/statement timeout →
// kBusy, disk full → kFull, read-only transaction → kReadOnly, connection
// classes and a dead connection → kUnavailable, auth → kPermission, missing
// database or table → kNotFound, anything else → kIo. The message is
// libpq's, first line.
Status FromPg(PGconn* conn, const PGresult* res, const std::string& what);

// Query parameters in text format; nullopt is SQL NULL.
class PgParams {
 public:
  PgParams& Add(int64_t v) { values_.push_back(std::to_string(v)); return *this; }
  PgParams& Add(const std::string& v) { values_.push_back(v); return *this; }
  PgParams& Add(const char* v) { values_.push_back(std::string(v)); return *this; }
  PgParams& Add(bool v) { values_.push_back(v ? "t" : "f"); return *this; }
  PgParams& Add(const std::optional<int64_t>& v) {
    values_.push_back(v ? std::optional<std::string>(std::to_string(*v)) : std::nullopt);
    return *this;
  }
  PgParams& Add(const std::optional<std::string>& v) { values_.push_back(v); return *this; }
  PgParams& Add(const std::optional<double>& v);
  const std::vector<std::optional<std::string>>& values() const { return values_; }

 private:
  std::vector<std::optional<std::string>> values_;
};

// A query's result; rows and columns are 0-based.
class PgResult {
 public:
  explicit PgResult(PGresult* res) : res_(res, [](PGresult* r) { pq::PQclear(r); }) {}
  int rows() const { return pq::PQntuples(res_.get()); }
  int64_t affected() const;
  bool IsNull(int row, int col) const { return pq::PQgetisnull(res_.get(), row, col) != 0; }
  int64_t Int(int row, int col) const;
  std::string Text(int row, int col) const;
  bool Bool(int row, int col) const { return Text(row, col) == "t"; }
  std::optional<int64_t> OptInt(int row, int col) const;
  std::optional<std::string> OptText(int row, int col) const;
  std::optional<double> OptDouble(int row, int col) const;
  PGresult* raw() const { return res_.get(); }

 private:
  std::shared_ptr<PGresult> res_;
};

struct PgConnOptions {
  int64_t statement_timeout_ms = 5000;
  int64_t connect_timeout_s = 5;
};

class PgConn {
 public:
  // Connects to `url` (a libpq URL or key=value string). TCP keepalives and
  // timeouts are set unless the URL says otherwise. Fails with the server's
  // own words (kUnavailable when it cannot be reached, kPermission for a
  // refused login, kNotFound for a missing database).
  static Result<std::unique_ptr<PgConn>> Connect(const std::string& url,
                                                 const PgConnOptions& options);
  ~PgConn();
  PgConn(const PgConn&) = delete;
  PgConn& operator=(const PgConn&) = delete;

  // Runs one statement (prepared once per connection, by its text).
  Result<PgResult> Query(const std::string& sql, const PgParams& params = PgParams());
  // Several statements without parameters (DDL, SET).
  Status Script(const std::string& sql);

  // Group commit, as SqliteDb::InGroup: one transaction in which every
  // PgTransaction is a savepoint. Returns the COMMIT's status; after an
  // error outside a savepoint the group fails as a whole.
  Status InGroup(const std::function<void()>& ops);
  // One REPEATABLE READ, READ ONLY transaction: every read sees one snapshot.
  Status InSnapshot(const std::function<void()>& ops);

  // When the connection is dead: reconnects, at most once per backoff step
  // (100 ms doubling to 5 s); kUnavailable with the last error otherwise.
  Status EnsureConnected();
  bool connected() const { return conn_ != nullptr && pq::PQstatus(conn_) == CONNECTION_OK; }
  PGconn* raw() const { return conn_; }
  // Reconnections made since Connect (for /metrics).
  uint64_t reconnects() const { return reconnects_; }

 private:
  friend class PgTransaction;
  PgConn(std::string url, PgConnOptions options) : url_(std::move(url)), options_(options) {}
  Status Open();
  Status Configure();
  // A failed statement: when it aborted the group's own transaction, the
  // group is lost.
  void NoteFailure(const Status& failed);
  Status CommitTop();

  std::string url_;
  PgConnOptions options_;
  PGconn* conn_ = nullptr;
  std::map<std::string, std::string> prepared_;  // sql -> statement name
  int64_t next_name_ = 0;
  bool in_group_ = false;
  int txn_depth_ = 0;  // open transactions and savepoints (no reconnect inside)
  std::optional<Status> group_lost_;
  int64_t retry_at_ms_ = 0;
  int64_t backoff_ms_ = 0;
  std::optional<Status> last_connect_error_;
  uint64_t reconnects_ = 0;
};

// BEGIN on Begin(), ROLLBACK on destruction unless committed; a savepoint
// inside PgConn::InGroup (its rollback undoes only its own writes).
class PgTransaction {
 public:
  explicit PgTransaction(PgConn* conn) : conn_(conn) {}
  ~PgTransaction();
  PgTransaction(const PgTransaction&) = delete;
  PgTransaction& operator=(const PgTransaction&) = delete;

  Status Begin();
  Status Commit();
  void Rollback();

 private:
  PgConn* conn_;
  bool open_ = false;
  bool savepoint_ = false;
  std::string name_;
};

}  // namespace orch
