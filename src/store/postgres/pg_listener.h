// LISTEN on a PostgreSQL channel from a thread of its own, so that work
// queued by another node reaches this one at once (SPEC §11: claiming stays
// event-driven across hosts; the reaper tick is only the safety net). The
// connection is kept up with backoff; `on_notify` runs on the listener
// thread after each batch of notifications and after every (re)connection,
// since notifications sent while it was down are lost.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "base/status.h"

namespace orch {

class PgListener {
 public:
  PgListener(std::string url, std::string channel, std::function<void()> on_notify);
  ~PgListener();  // Stop()
  PgListener(const PgListener&) = delete;
  PgListener& operator=(const PgListener&) = delete;

  Status Start();
  void Stop();
  bool connected() const { return connected_.load(std::memory_order_relaxed); }
  uint64_t notifications() const { return notifications_.load(std::memory_order_relaxed); }

 private:
  void Main();
  // Sleeps up to `ms`, or until Stop(); false when stopping.
  bool Pause(int64_t ms);

  std::string url_;
  std::string channel_;
  std::function<void()> on_notify_;
  int wake_fd_ = -1;  // eventfd: Stop() wakes the thread
  std::atomic<bool> stop_{false};
  std::atomic<bool> connected_{false};
  std::atomic<uint64_t> notifications_{0};
  std::thread thread_;
};

}  // namespace orch
