// One thread for work that blocks the calling thread (creating a process
// sleeps until the child has exec'd): work runs there in posting order, and
// each `done` runs on the loop afterwards, also in order. Results travel in
// whatever the two closures share; the hand-over through the worker's mutex
// orders the thread's writes before the loop's reads.
#pragma once

#include <uv.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "base/status.h"
#include "base/uv_handle.h"

namespace orch {

class BlockingWorker {
 public:
  // `name`: the thread's name (top -H, perf), at most 15 characters.
  BlockingWorker(uv_loop_t* loop, const char* name) : loop_(loop), name_(name) {}
  ~BlockingWorker() { Stop(); }
  BlockingWorker(const BlockingWorker&) = delete;
  BlockingWorker& operator=(const BlockingWorker&) = delete;

  Status Start();
  // Loop thread only. False when not started or stopped: nothing runs.
  bool Post(std::function<void()> work, std::function<void()> done);
  // Lets the work in progress finish, drops what has not started and the
  // `done`s not yet delivered, joins the thread. Loop thread only;
  // idempotent.
  void Stop();
  // Work posted and not yet started (any thread).
  size_t waiting();

 private:
  struct Item {
    std::function<void()> work, done;
  };
  void Main();
  void Deliver();

  uv_loop_t* loop_;
  const char* name_;
  UvHandle<uv_async_t> async_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;       // posted, not run
  std::vector<Item> completed_;  // run, `done` not yet called
  bool stop_ = false;
};

}  // namespace orch
