// The one place where store work crosses threads (SPEC §11: the event loop
// never waits on the database). The loop thread posts work; a writer thread
// runs the writes, committing all that queued up while the previous commit
// was in flight in one transaction (group commit); a reader thread runs the
// reads on a second connection (WAL readers are not blocked by a writer).
// Each result comes back to the loop thread as an event (one uv_async) and
// is handed to its `done` there, in the order the work finished on its lane:
// writes are run, committed and delivered in the order they were posted.
//
// JobStore itself stays synchronous and single-threaded: each connection is
// used by exactly one thread. Nothing here is locked outside this file.
#pragma once

#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "base/status.h"
#include "store/job_store.h"

namespace orch {

// A failure of the store itself (locked, full, read-only, corrupt, I/O), as
// opposed to an answer about the data (not found, conflict, guard missed).
bool IsStoreFailure(Code code);

class StoreExecutor {
 public:
  struct Options {
    // Client writes (submit, retry) that may wait at once; beyond it
    // TryWrite refuses. Every other write always queues.
    int64_t max_pending_writes = 1000;
    // Writes committed together at most.
    int64_t max_batch = 512;
  };

  // What /readyz and /metrics need to know, as seen from the loop thread.
  struct Health {
    int64_t pending_writes = 0;
    int64_t pending_reads = 0;
    // How long the oldest write not yet delivered has waited (0: none).
    int64_t oldest_write_wait_ms = 0;
    // The last write that failed for the store's own reasons, until a
    // write probe (Probe) succeeds: only a committed write proves that the
    // store takes writes again.
    std::optional<Status> last_write_failure;
    int64_t pending_client_writes = 0;
    uint64_t batches = 0;
    uint64_t batched_writes = 0;  // writes committed, summed over batches
  };

  // `writer` and `reader` are two connections to the same store, owned by
  // the caller; from Start() until Close() has finished they belong to the
  // executor's threads and must not be used elsewhere.
  StoreExecutor(uv_loop_t* loop, JobStore* writer, JobStore* reader, Options options);
  StoreExecutor(uv_loop_t* loop, JobStore* writer, JobStore* reader)
      : StoreExecutor(loop, writer, reader, Options{}) {}
  // Requires Close() to have finished (or Start() never called).
  ~StoreExecutor();
  StoreExecutor(const StoreExecutor&) = delete;
  StoreExecutor& operator=(const StoreExecutor&) = delete;

  Status Start();

  // Runs `work(store)` on the writer thread inside the next group
  // transaction and calls `done(result)` on the loop thread once it has
  // committed. When the commit fails, every write of the batch gets that
  // failure instead of what it returned. After Close() began, `done` gets
  // kUnavailable at once (on the loop, later) and nothing runs.
  template <typename Work, typename Done>
  void Write(Work work, Done done) {
    Post<std::invoke_result_t<Work, JobStore&>>(kWrite, std::move(work), std::move(done), false);
  }
  // The same for a client's write: false, and nothing posted, while
  // max_pending_writes client writes wait already (back-pressure).
  template <typename Work, typename Done>
  bool TryWrite(Work work, Done done) {
    return Post<std::invoke_result_t<Work, JobStore&>>(kWrite, std::move(work), std::move(done),
                                                       true);
  }
  // Runs `work(store)` on the reader connection in one read transaction
  // (one snapshot); sees every write whose `done` has already been called.
  // False, and `done` never called, when the executor is not running.
  template <typename Work, typename Done>
  bool Read(Work work, Done done) {
    return Post<std::invoke_result_t<Work, JobStore&>>(kRead, std::move(work), std::move(done),
                                                       false);
  }

  // A committed write that proves the store writable (JobStore::
  // ProbeWritable); its success clears health().last_write_failure.
  void Probe(std::function<void(Status)> done);

  // Loop thread only.
  Health health() const;
  // Commits that may have changed what a read sees (a write probe does not):
  // a read posted after this call sees each of them.
  uint64_t data_commits() const { return data_commits_.load(std::memory_order_acquire); }
  // Writes and reads posted whose `done` has not run yet.
  int64_t in_flight() const { return pending_[kWrite] + pending_[kRead]; }
  int64_t writes_in_flight() const { return pending_[kWrite]; }

  // Takes no more work, lets both threads finish everything posted, hands
  // out its results, stops the threads, closes the async handle, then calls
  // `done` (on the loop thread). Work posted after that is dropped: its
  // `done` never runs.
  void Close(std::function<void()> done);

 private:
  enum LaneId { kWrite = 0, kRead = 1 };

  struct Task {
    virtual ~Task() = default;
    virtual void Run(JobStore& store) = 0;         // store thread
    virtual void Fail(const Status& status) = 0;   // store thread, or loop after Close
    virtual void Deliver() = 0;                    // loop thread
    virtual const Status& result_status() const = 0;
    LaneId lane = kWrite;
    bool client = false;
    bool queued = false;  // reached a lane (not refused at Close)
    bool probe = false;   // its success proves the store writable
  };

  template <typename R>
  struct TypedTask final : Task {
    std::function<R(JobStore&)> work;
    std::function<void(R)> done;
    std::optional<R> result;
    void Run(JobStore& store) override { result.emplace(work(store)); }
    void Fail(const Status& status) override { result.emplace(R(status)); }
    void Deliver() override { done(std::move(*result)); }
    const Status& result_status() const override {
      if constexpr (std::is_same_v<R, Status>) {
        return *result;
      } else {
        return result->status();
      }
    }
  };

  struct Lane {
    JobStore* store = nullptr;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::unique_ptr<Task>> queue;
    bool stop = false;
    std::thread thread;
  };

  template <typename R, typename Work, typename Done>
  bool Post(LaneId lane, Work work, Done done, bool client) {
    auto task = std::make_unique<TypedTask<R>>();
    task->work = std::move(work);
    task->done = std::move(done);
    return Enqueue(lane, std::move(task), client);
  }
  bool Enqueue(LaneId lane, std::unique_ptr<Task> task, bool client);
  void WriterMain();
  void ReaderMain();
  void RunGuarded(Task& task, JobStore& store);
  void Complete(std::vector<std::unique_ptr<Task>> tasks);
  static void OnAsync(uv_async_t* handle);
  void DeliverCompleted();
  void MaybeFinishClose();

  uv_loop_t* loop_;
  Options options_;
  Lane lanes_[2];
  uv_async_t* async_ = nullptr;  // heap; freed in its close callback

  std::mutex done_mu_;
  std::vector<std::unique_ptr<Task>> completed_;  // guarded by done_mu_

  // Loop thread only.
  int64_t pending_[2] = {0, 0};
  int64_t pending_client_writes_ = 0;
  std::deque<int64_t> write_posted_at_;  // monotonic ms, in posting order
  std::optional<Status> last_write_failure_;
  std::atomic<uint64_t> batches_{0}, batched_writes_{0};  // written by the writer thread
  std::atomic<uint64_t> data_commits_{0};
  bool closing_ = false;
  std::function<void()> close_done_;
};

}  // namespace orch
