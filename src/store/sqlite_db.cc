#include "store/sqlite_db.h"

#include <utility>

namespace orch {

Status FromSqlite(sqlite3* db, int rc) {
  std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  Code code = Code::kIo;
  switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE: return Status::Ok();
    case SQLITE_BUSY:
    case SQLITE_LOCKED: code = Code::kBusy; break;
    case SQLITE_FULL: code = Code::kFull; break;
    case SQLITE_READONLY: code = Code::kReadOnly; break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: code = Code::kCorrupt; break;
    default: break;
  }
  return Status(code, "sqlite: " + msg);
}

Stmt::Stmt(Stmt&& other) noexcept
    : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)), owned_(other.owned_),
      bind_rc_(other.bind_rc_) {}

Stmt::~Stmt() {
  if (stmt_ == nullptr) return;
  if (owned_) {
    sqlite3_finalize(stmt_);
  } else {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
}

Stmt& Stmt::Bind(int index, int64_t value) {
  int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Stmt& Stmt::Bind(int index, const std::string& value) {
  int rc = sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()),
                             SQLITE_TRANSIENT);
  if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Stmt& Stmt::Bind(int index, const char* value) { return Bind(index, std::string(value)); }

Stmt& Stmt::Bind(int index, const std::optional<int64_t>& value) {
  return value ? Bind(index, *value) : BindNull(index);
}

Stmt& Stmt::Bind(int index, const std::optional<std::string>& value) {
  return value ? Bind(index, *value) : BindNull(index);
}

Stmt& Stmt::Bind(int index, const std::optional<double>& value) {
  if (!value) return BindNull(index);
  int rc = sqlite3_bind_double(stmt_, index, *value);
  if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Stmt& Stmt::BindNull(int index) {
  int rc = sqlite3_bind_null(stmt_, index);
  if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

Result<bool> Stmt::Step() {
  if (bind_rc_ != SQLITE_OK) return FromSqlite(db_, bind_rc_);
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  return FromSqlite(db_, rc);
}

Status Stmt::Run() {
  for (;;) {
    auto r = Step();
    if (!r.ok()) return r.status();
    if (!*r) return Status::Ok();
  }
}

bool Stmt::IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
int64_t Stmt::Int(int col) const { return sqlite3_column_int64(stmt_, col); }

std::string Stmt::Text(int col) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
  if (p == nullptr) return {};
  return std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
}

std::optional<int64_t> Stmt::OptInt(int col) const {
  if (IsNull(col)) return std::nullopt;
  return Int(col);
}

std::optional<std::string> Stmt::OptText(int col) const {
  if (IsNull(col)) return std::nullopt;
  return Text(col);
}

std::optional<double> Stmt::OptDouble(int col) const {
  if (IsNull(col)) return std::nullopt;
  return sqlite3_column_double(stmt_, col);
}

Result<std::unique_ptr<SqliteDb>> SqliteDb::Open(const std::string& path, int flags) {
  // Before SQLite initializes: its allocation statistics (which nothing
  // here reads) take a process-wide mutex on every allocation, shared by
  // the writer and reader threads.
  static const bool configured = [] {
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    return true;
  }();
  (void)configured;
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    Status s = FromSqlite(db, rc);
    sqlite3_close_v2(db);
    return Status(s.code(), "cannot open " + path + ": " + s.message());
  }
  sqlite3_extended_result_codes(db, 1);
  return std::unique_ptr<SqliteDb>(new SqliteDb(db));
}

SqliteDb::~SqliteDb() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

Result<Stmt> SqliteDb::Cached(const std::string& sql) {
  auto it = cache_.find(sql);
  if (it == cache_.end()) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
    if (rc != SQLITE_OK) return FromSqlite(db_, rc);
    it = cache_.emplace(sql, stmt).first;
  }
  return Stmt(db_, it->second, /*owned=*/false);
}

Result<Stmt> SqliteDb::Prepare(const std::string& sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) return FromSqlite(db_, rc);
  return Stmt(db_, stmt, /*owned=*/true);
}

Status SqliteDb::Exec(const std::string& sql) {
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return FromSqlite(db_, rc);
  return Status::Ok();
}

Status SqliteDb::InGroup(const std::function<void()>& ops) {
  {
    Transaction txn(this);
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
}

Status SqliteDb::InSnapshot(const std::function<void()>& ops) {
  ORCH_RETURN_IF_ERROR(Exec("BEGIN"));
  ops();
  // Nothing was written: COMMIT only ends the read.
  Status s = Exec("COMMIT");
  if (!s.ok() && sqlite3_get_autocommit(db_) == 0) Exec("ROLLBACK").ok();
  return s;
}

Transaction::~Transaction() { Rollback(); }

Status Transaction::Begin() {
  if (db_->in_group_) {
    // A write after the group was rolled back would commit on its own.
    if (db_->group_lost_) return *db_->group_lost_;
    if (sqlite3_get_autocommit(db_->raw()) != 0) {
      db_->group_lost_ = Status(Code::kIo, "the group transaction ended unexpectedly");
      return *db_->group_lost_;
    }
    ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached("SAVEPOINT op"));
    ORCH_RETURN_IF_ERROR(st.Run());
    open_ = true;
    savepoint_ = true;
    return Status::Ok();
  }
  ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached("BEGIN IMMEDIATE"));
  ORCH_RETURN_IF_ERROR(st.Run());
  open_ = true;
  return Status::Ok();
}

Status Transaction::Commit() {
  Status s;
  {
    ORCH_ASSIGN_OR_RETURN(Stmt st, db_->Cached(savepoint_ ? "RELEASE op" : "COMMIT"));
    s = st.Run();
  }
  if (s.ok()) open_ = false;
  return s;
}

void Transaction::Rollback() {
  if (!open_) return;
  open_ = false;
  // After FULL/IOERR SQLite may have rolled back already (autocommit is on).
  if (sqlite3_get_autocommit(db_->raw()) != 0) {
    if (savepoint_ && !db_->group_lost_) {
      int rc = sqlite3_extended_errcode(db_->raw());
      db_->group_lost_ = rc != SQLITE_OK ? FromSqlite(db_->raw(), rc)
                                         : Status(Code::kIo, "the group transaction was rolled back");
    }
    return;
  }
  if (savepoint_) {
    sqlite3_exec(db_->raw(), "ROLLBACK TO op; RELEASE op", nullptr, nullptr, nullptr);
    return;
  }
  sqlite3_exec(db_->raw(), "ROLLBACK", nullptr, nullptr, nullptr);
}

}  // namespace orch
