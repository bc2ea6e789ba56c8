// Thin RAII layer over the SQLite C API used by the store: one connection,
// its cached prepared statements, and IMMEDIATE transactions. SQLite result
// codes become a Status in exactly one place, FromSqlite(). Not thread-safe:
// a SqliteDb belongs to one thread.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "base/status.h"

namespace orch {

// The only conversion of SQLite result codes (STYLE §3): BUSY/LOCKED → kBusy,
// FULL → kFull, READONLY → kReadOnly, CORRUPT/NOTADB → kCorrupt, anything
// else → kIo. The message is sqlite3_errmsg(db) (or sqlite3_errstr(rc) when
// db is null), so call it right after the failing call.
Status FromSqlite(sqlite3* db, int rc);

// A prepared statement. Either owned (finalized on destruction) or borrowed
// from the connection's cache (reset and unbound on destruction, so a cached
// statement never keeps a read snapshot open).
class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* stmt, bool owned) : db_(db), stmt_(stmt), owned_(owned) {}
  Stmt(Stmt&& other) noexcept;
  Stmt& operator=(Stmt&&) = delete;
  Stmt(const Stmt&) = delete;
  ~Stmt();

  // Parameters are 1-based. A binding error is remembered and returned by Step.
  Stmt& Bind(int index, int64_t value);
  Stmt& Bind(int index, const std::string& value);
  Stmt& Bind(int index, const char* value);
  Stmt& Bind(int index, const std::optional<int64_t>& value);
  Stmt& Bind(int index, const std::optional<std::string>& value);
  Stmt& Bind(int index, const std::optional<double>& value);
  Stmt& BindNull(int index);

  // Ok(true) when a row is ready, Ok(false) when done.
  Result<bool> Step();
  // Steps to completion, ignoring any rows (writes, pragmas).
  Status Run();

  bool IsNull(int col) const;
  int64_t Int(int col) const;
  std::string Text(int col) const;
  std::optional<int64_t> OptInt(int col) const;
  std::optional<std::string> OptText(int col) const;
  std::optional<double> OptDouble(int col) const;

  sqlite3_stmt* raw() const { return stmt_; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
  bool owned_;
  int bind_rc_ = SQLITE_OK;
};

class SqliteDb {
 public:
  // sqlite3_open_v2 with `flags` (SQLITE_OPEN_*); extended result codes on.
  static Result<std::unique_ptr<SqliteDb>> Open(const std::string& path, int flags);
  ~SqliteDb();
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  sqlite3* raw() const { return db_; }

  // A statement from the per-connection cache, prepared on first use. `sql`
  // is the cache key. The returned handle resets the statement when it dies;
  // do not hold two handles to the same SQL at once.
  Result<Stmt> Cached(const std::string& sql);
  // A one-off statement, finalized when the handle dies.
  Result<Stmt> Prepare(const std::string& sql);
  // sqlite3_exec for DDL and pragmas (several statements allowed).
  Status Exec(const std::string& sql);
  int64_t Changes() const { return sqlite3_changes64(db_); }
  int64_t LastInsertRowid() const { return sqlite3_last_insert_rowid(db_); }

  // Group commit: runs `ops` in one IMMEDIATE transaction in which every
  // Transaction becomes a savepoint. Returns the COMMIT's status; when an
  // error made SQLite roll the whole group back, the writes after it fail
  // and so does the group (nothing half-kept). `ops` does not run when the
  // transaction cannot begin.
  Status InGroup(const std::function<void()>& ops);
  // Runs `ops` in one deferred read transaction: every read it makes sees
  // the same snapshot. `ops` does not run when it cannot begin.
  Status InSnapshot(const std::function<void()>& ops);

 private:
  friend class Transaction;
  explicit SqliteDb(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  bool in_group_ = false;
  std::optional<Status> group_lost_;  // why SQLite rolled the group back
  std::map<std::string, sqlite3_stmt*> cache_;
};

// BEGIN IMMEDIATE on Begin(); rolls back on destruction unless committed.
// SQLite may already have rolled back on FULL/IOERR/BUSY; that is handled.
// Inside SqliteDb::InGroup it is a savepoint: its commit is a RELEASE, its
// rollback undoes only its own writes.
class Transaction {
 public:
  explicit Transaction(SqliteDb* db) : db_(db) {}
  ~Transaction();
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  Status Begin();
  Status Commit();
  void Rollback();

 private:
  SqliteDb* db_;
  bool open_ = false;
  bool savepoint_ = false;
};

}  // namespace orch
