// Copies the WAL back into the database file from a background thread with
// its own connection, so that the fsync of a checkpoint never lands inside a
// claim or finish on the daemon's loop thread (bench/README.md: with
// SQLite's automatic checkpoint the claim p99 was ~4 ms, without ~0.2 ms).
// PASSIVE checkpoints never block writers or readers.
#pragma once

#include <sqlite3.h>

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "base/status.h"

namespace orch {

class WalCheckpointer {
 public:
  // Opens a second connection to `path` and checkpoints every `interval_ms`.
  static Result<std::unique_ptr<WalCheckpointer>> Start(const std::string& path,
                                                        int64_t interval_ms);
  // Stops the thread (waiting for a checkpoint in progress) and closes.
  ~WalCheckpointer();
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

  // Checkpoints done and failed so far (for tests and metrics).
  int64_t checkpoints() const;
  int64_t failures() const;
  int64_t frames_copied() const;  // WAL frames written back to the database

 private:
  WalCheckpointer(sqlite3* db, int64_t interval_ms) : db_(db), interval_ms_(interval_ms) {}
  void Loop();

  sqlite3* db_;
  int64_t interval_ms_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  int64_t checkpoints_ = 0;
  int64_t failures_ = 0;
  int64_t frames_copied_ = 0;
  std::thread thread_;
};

}  // namespace orch
