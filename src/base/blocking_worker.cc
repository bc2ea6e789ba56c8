#include "base/blocking_worker.h"

#include <pthread.h>

#include <system_error>

#include "base/log.h"
#include "base/thread_signals.h"

namespace orch {

Status BlockingWorker::Start() {
  int rc = async_.Init(uv_async_init, loop_, this, [](uv_async_t* h) {
    if (h->data != nullptr) static_cast<BlockingWorker*>(h->data)->Deliver();
  });
  if (rc != 0) return FromUv("uv_async_init", rc);
  try {
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), name_);
      BlockSignalsInThisThread();
      Main();
    });
  } catch (const std::system_error& e) {
    async_.Close();
    return Status(Code::kUnavailable, std::string("cannot start a thread: ") + e.what());
  }
  return Status::Ok();
}

bool BlockingWorker::Post(std::function<void()> work, std::function<void()> done) {
  if (!thread_.joinable()) return false;
  {
    std::lock_guard lock(mu_);
    queue_.push_back({std::move(work), std::move(done)});
  }
  cv_.notify_one();
  return true;
}

void BlockingWorker::Main() {
  for (;;) {
    Item item;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    item.work();
    {
      std::lock_guard lock(mu_);
      completed_.push_back(std::move(item));
    }
    uv_async_send(async_.get());
  }
}

void BlockingWorker::Deliver() {
  std::vector<Item> ready;
  {
    std::lock_guard lock(mu_);
    ready.swap(completed_);
  }
  for (auto& item : ready) {
    try {
      item.done();
    } catch (const std::exception& e) {
      log::Error("a worker's result handler failed", {{"error", e.what()}});
    }
  }
}

size_t BlockingWorker::waiting() {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void BlockingWorker::Stop() {
  if (thread_.joinable()) {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      queue_.clear();  // not started: never run
    }
    cv_.notify_one();
    thread_.join();
  }
  // Closed after the join: the thread never sends to a closed handle.
  async_.Close();
}

}  // namespace orch
