// The store contract suite runs against every backend: StoreContract is
// parametrized by the backend's name; each test gets an empty store of it
// (a fresh SQLite file, or a fresh PostgreSQL database), a way to open more
// connections to it, and raw SQL for what the interface never writes.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "store/job_store.h"
#include "store/store_fixture.h"
#include "support/pg_test.h"

namespace orch::test {

class BackendStore {
 public:
  explicit BackendStore(const std::string& backend) : backend_(backend) {
    if (backend_ == "postgres") {
      pg_ = std::make_unique<PgTestDatabase>();
      config_.backend = "postgres";
      config_.url = pg_->url();
      config_.busy_timeout_ms = 5000;
    } else {
      config_ = StoreConfigIn(dir_);
    }
  }
  const std::string& backend() const { return backend_; }
  const Config::Store& config() const { return config_; }
  bool is_postgres() const { return backend_ == "postgres"; }

  // Another connection to the same store (created and migrated on first use).
  std::unique_ptr<JobStore> Open() const {
    JobStoreOpenOptions options;
    options.background_maintenance = false;
    auto r = OpenJobStore(config_, options);
    EXPECT_TRUE(r.ok()) << backend_ << ": " << r.status().ToString();
    if (!r.ok()) return nullptr;
    return std::move(r.value());
  }

  // Raw SQL, as another client would send it; "" when it worked.
  std::string Exec(const std::string& sql) const {
    if (pg_) return pg_->Exec(sql);
    RawDb raw(config_.path);
    return raw.Exec(sql) == SQLITE_OK ? "" : raw.last_error();
  }
  std::vector<std::string> Texts(const std::string& sql) const {
    if (pg_) return pg_->Texts(sql);
    return RawDb(config_.path).Texts(sql);
  }
  int64_t Int(const std::string& sql) const {
    if (pg_) return pg_->Int(sql);
    return RawDb(config_.path).Int(sql);
  }

  // Lets the next raw UPDATE break I1 (queued carrying a run), as old code or
  // a hand edit could: SQLite ignores CHECKs for the connection, PostgreSQL
  // loses the constraint. Returns the statement prefix to use.
  std::string WithoutCheckConstraints() const {
    if (pg_) {
      EXPECT_EQ("", pg_->Exec("ALTER TABLE jobs DROP CONSTRAINT IF EXISTS i1_queued_owns_nothing, "
                              "DROP CONSTRAINT IF EXISTS i2_running_has_run, "
                              "DROP CONSTRAINT IF EXISTS i4_terminal_has_finished_at"));
      return "";
    }
    return "PRAGMA ignore_check_constraints=ON; ";
  }

 private:
  std::string backend_;
  TempDir dir_;
  std::unique_ptr<PgTestDatabase> pg_;
  Config::Store config_;
};

class StoreContract : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    backend_ = std::make_unique<BackendStore>(GetParam());
    store_ = backend_->Open();
    ASSERT_NE(store_, nullptr);
  }
  JobStore* store() { return store_.get(); }
  BackendStore& backend() { return *backend_; }
  // Closes the store and opens it again.
  void Reopen() {
    store_.reset();
    store_ = backend_->Open();
    ASSERT_NE(store_, nullptr);
  }

 private:
  std::unique_ptr<BackendStore> backend_;
  std::unique_ptr<JobStore> store_;
};

inline std::string BackendName(const ::testing::TestParamInfo<std::string>& info) {
  return info.param == "postgres" ? "Postgres" : "Sqlite";
}

}  // namespace orch::test
