#include "store/wal_checkpointer.h"

#include <pthread.h>

#include <chrono>

#include "base/thread_signals.h"
#include "store/sqlite_db.h"

namespace orch {

Result<std::unique_ptr<WalCheckpointer>> WalCheckpointer::Start(const std::string& path,
                                                                int64_t interval_ms) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    Status s = FromSqlite(db, rc);
    sqlite3_close_v2(db);
    return s;
  }
  // A connection that has never read the database has not opened the WAL
  // index: its checkpoints return SQLITE_OK and copy nothing.
  rc = sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    Status s = FromSqlite(db, rc);
    sqlite3_close_v2(db);
    return s;
  }
  std::unique_ptr<WalCheckpointer> c(new WalCheckpointer(db, interval_ms));
  c->thread_ = std::thread([p = c.get()] {
    pthread_setname_np(pthread_self(), "orch-checkpoint");
    BlockSignalsInThisThread();
    p->Loop();
  });
  return c;
}

WalCheckpointer::~WalCheckpointer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  sqlite3_close_v2(db_);
}

void WalCheckpointer::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait_for(lock, std::chrono::milliseconds(interval_ms_), [this] { return stop_; });
    if (stop_) return;
    lock.unlock();
    int log_frames = -1, copied = -1;
    int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, &log_frames,
                                       &copied);
    lock.lock();
    // BUSY only means another checkpoint is running; the next tick retries.
    // log_frames == -1: the connection is not in WAL mode, nothing was done.
    if (rc == SQLITE_OK && log_frames >= 0) {
      ++checkpoints_;
      frames_copied_ += copied;
    } else if ((rc & 0xff) != SQLITE_BUSY) {
      ++failures_;
    }
  }
}

int64_t WalCheckpointer::frames_copied() const {
  std::lock_guard<std::mutex> lock(mu_);
  return frames_copied_;
}

int64_t WalCheckpointer::checkpoints() const {
  std::lock_guard<std::mutex> lock(mu_);
  return checkpoints_;
}

int64_t WalCheckpointer::failures() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failures_;
}

}  // namespace orch
