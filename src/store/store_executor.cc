#include "store/store_executor.h"

#include <pthread.h>

#include <algorithm>
#include <cassert>

#include "base/clock.h"
#include "base/log.h"
#include "base/thread_signals.h"
#include "base/uv_handle.h"

namespace orch {

bool IsStoreFailure(Code code) {
  switch (code) {
    case Code::kBusy:
    case Code::kFull:
    case Code::kReadOnly:
    case Code::kCorrupt:
    case Code::kIo:
    case Code::kUnavailable:
      return true;
    default:
      return false;
  }
}

namespace {
int64_t NowMono() { return MonotonicNs() / 1'000'000; }
}  // namespace

StoreExecutor::StoreExecutor(uv_loop_t* loop, JobStore* writer, JobStore* reader, Options options)
    : loop_(loop), options_(options) {
  lanes_[kWrite].store = writer;
  lanes_[kRead].store = reader;
}

StoreExecutor::~StoreExecutor() {
  // Normally Close() has stopped everything; this only keeps a test that
  // bailed out from leaving threads behind.
  for (Lane& lane : lanes_) {
    {
      std::lock_guard lock(lane.mu);
      lane.stop = true;
    }
    lane.cv.notify_all();
    if (lane.thread.joinable()) lane.thread.join();
  }
  if (async_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(async_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_async_t*>(h); });
  }
}

Status StoreExecutor::Start() {
  assert(async_ == nullptr);  // Start() once
  async_ = new uv_async_t();
  int rc = uv_async_init(loop_, async_, &StoreExecutor::OnAsync);
  if (rc != 0) {
    delete async_;
    async_ = nullptr;
    return FromUv("store executor: uv_async_init", rc);
  }
  async_->data = this;
  lanes_[kWrite].thread = std::thread([this] {
    pthread_setname_np(pthread_self(), "orch-store-w");
    BlockSignalsInThisThread();
    WriterMain();
  });
  lanes_[kRead].thread = std::thread([this] {
    pthread_setname_np(pthread_self(), "orch-store-r");
    BlockSignalsInThisThread();
    ReaderMain();
  });
  return Status::Ok();
}

bool StoreExecutor::Enqueue(LaneId lane, std::unique_ptr<Task> task, bool client) {
  if (async_ == nullptr) return false;  // never started, or closed
  if (client && lane == kWrite && pending_client_writes_ >= options_.max_pending_writes) {
    return false;
  }
  task->lane = lane;
  task->client = client && lane == kWrite;
  ++pending_[lane];
  if (task->client) ++pending_client_writes_;
  if (closing_) {
    // Answered, never run: callers see "unavailable" like any store failure.
    task->Fail(Status(Code::kUnavailable, "the store is closing"));
    std::vector<std::unique_ptr<Task>> one;
    one.push_back(std::move(task));
    Complete(std::move(one));
    return true;
  }
  task->queued = true;
  if (lane == kWrite) write_posted_at_.push_back(NowMono());
  Lane& l = lanes_[lane];
  {
    std::lock_guard lock(l.mu);
    l.queue.push_back(std::move(task));
  }
  l.cv.notify_one();
  return true;
}

void StoreExecutor::RunGuarded(Task& task, JobStore& store) {
  try {
    task.Run(store);
  } catch (const std::exception& e) {
    task.Fail(Status(Code::kInternal, std::string("store work failed: ") + e.what()));
  } catch (...) {
    task.Fail(Status(Code::kInternal, "store work failed"));
  }
}

void StoreExecutor::WriterMain() {
  Lane& lane = lanes_[kWrite];
  for (;;) {
    std::vector<std::unique_ptr<Task>> batch;
    {
      std::unique_lock lock(lane.mu);
      lane.cv.wait(lock, [&] { return lane.stop || !lane.queue.empty(); });
      if (lane.queue.empty()) return;  // stopping, and everything posted is done
      // Everything that queued up while the last commit was in flight goes
      // into this one.
      while (!lane.queue.empty() && static_cast<int64_t>(batch.size()) < options_.max_batch) {
        batch.push_back(std::move(lane.queue.front()));
        lane.queue.pop_front();
      }
    }
    Status committed = lane.store->InTransaction([&] {
      for (auto& task : batch) RunGuarded(*task, *lane.store);
    });
    if (committed.ok()) {
      batches_.fetch_add(1, std::memory_order_relaxed);
      batched_writes_.fetch_add(batch.size(), std::memory_order_relaxed);
      if (std::any_of(batch.begin(), batch.end(), [](const auto& t) { return !t->probe; })) {
        data_commits_.fetch_add(1, std::memory_order_release);
      }
    } else {
      // Nothing of the batch was kept, whatever each write returned.
      for (auto& task : batch) task->Fail(committed);
    }
    Complete(std::move(batch));
  }
}

void StoreExecutor::ReaderMain() {
  Lane& lane = lanes_[kRead];
  for (;;) {
    std::unique_ptr<Task> task;
    {
      std::unique_lock lock(lane.mu);
      lane.cv.wait(lock, [&] { return lane.stop || !lane.queue.empty(); });
      if (lane.queue.empty()) return;
      task = std::move(lane.queue.front());
      lane.queue.pop_front();
    }
    Status read = lane.store->InSnapshot([&] { RunGuarded(*task, *lane.store); });
    if (!read.ok()) task->Fail(read);
    std::vector<std::unique_ptr<Task>> one;
    one.push_back(std::move(task));
    Complete(std::move(one));
  }
}

void StoreExecutor::Complete(std::vector<std::unique_ptr<Task>> tasks) {
  {
    std::lock_guard lock(done_mu_);
    for (auto& t : tasks) completed_.push_back(std::move(t));
  }
  uv_async_send(async_);
}

void StoreExecutor::OnAsync(uv_async_t* handle) {
  static_cast<StoreExecutor*>(handle->data)->DeliverCompleted();
}

void StoreExecutor::DeliverCompleted() {
  std::vector<std::unique_ptr<Task>> ready;
  {
    std::lock_guard lock(done_mu_);
    ready.swap(completed_);
  }
  for (auto& task : ready) {
    --pending_[task->lane];
    if (task->client) --pending_client_writes_;
    if (task->lane == kWrite) {
      if (task->queued && !write_posted_at_.empty()) write_posted_at_.pop_front();
      const Status& s = task->result_status();
      if (IsStoreFailure(s.code())) {
        if (s.code() != Code::kUnavailable || !closing_) last_write_failure_ = s;
      } else if (task->probe && s.ok()) {
        last_write_failure_.reset();
      }
    }
    try {
      task->Deliver();
    } catch (const std::exception& e) {
      log::Error("store result handler failed", {{"error", e.what()}});
    }
  }
  MaybeFinishClose();
}

void StoreExecutor::Probe(std::function<void(Status)> done) {
  auto task = std::make_unique<TypedTask<Status>>();
  task->work = [](JobStore& store) { return store.ProbeWritable(); };
  task->done = std::move(done);
  task->probe = true;
  Enqueue(kWrite, std::move(task), false);
}

StoreExecutor::Health StoreExecutor::health() const {
  Health h;
  h.pending_client_writes = pending_client_writes_;
  h.pending_writes = pending_[kWrite];
  h.pending_reads = pending_[kRead];
  if (!write_posted_at_.empty()) h.oldest_write_wait_ms = NowMono() - write_posted_at_.front();
  h.last_write_failure = last_write_failure_;
  h.batches = batches_.load(std::memory_order_relaxed);
  h.batched_writes = batched_writes_.load(std::memory_order_relaxed);
  return h;
}

void StoreExecutor::Close(std::function<void()> done) {
  close_done_ = std::move(done);
  if (!closing_) {
    closing_ = true;
    for (Lane& lane : lanes_) {
      {
        std::lock_guard lock(lane.mu);
        lane.stop = true;
      }
      lane.cv.notify_all();
    }
  }
  MaybeFinishClose();
}

void StoreExecutor::MaybeFinishClose() {
  if (!closing_ || !close_done_ || pending_[kWrite] + pending_[kRead] > 0) return;
  // Every result is delivered, so both threads are idle or already gone.
  for (Lane& lane : lanes_) {
    if (lane.thread.joinable()) lane.thread.join();
  }
  auto done = std::move(close_done_);
  close_done_ = nullptr;
  if (async_ == nullptr) {
    done();
    return;
  }
  uv_async_t* async = async_;
  async_ = nullptr;
  async->data = new std::function<void()>(std::move(done));
  uv_close(reinterpret_cast<uv_handle_t*>(async), [](uv_handle_t* h) {
    auto* fn = static_cast<std::function<void()>*>(h->data);
    delete reinterpret_cast<uv_async_t*>(h);
    (*fn)();
    delete fn;
  });
}

}  // namespace orch
