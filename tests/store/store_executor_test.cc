// The store executor: writes grouped into one commit, reads beside a held
// write lock, failures reported for every write of a failed commit, bounded
// client writes, and a close that drains. Real SQLite files, a real libuv
// loop, real threads (this binary also runs under TSan).
#include "store/store_executor.h"

#include <uv.h>

#include <chrono>
#include <functional>
#include <set>

#include <gtest/gtest.h>

#include "store/store_fixture.h"

namespace orch {
namespace {

using test::MustOpen;
using test::RawDb;
using test::Spec;
using test::StoreConfigIn;
using test::TempDir;

class StoreExecutorTest : public ::testing::Test {
 protected:
  void Open(int64_t busy_timeout_ms = 5000, StoreExecutor::Options options = {}) {
    ASSERT_EQ(0, uv_loop_init(&loop_));
    cfg_ = StoreConfigIn(dir_, busy_timeout_ms);
    writer_ = MustOpen(cfg_);
    reader_ = MustOpen(cfg_);
    check_ = MustOpen(cfg_);
    ASSERT_TRUE(writer_ && reader_ && check_);
    exec_ = std::make_unique<StoreExecutor>(&loop_, writer_.get(), reader_.get(), options);
    ASSERT_TRUE(exec_->Start().ok());
  }

  void TearDown() override {
    if (exec_) {
      bool closed = false;
      exec_->Close([&] { closed = true; });
      EXPECT_TRUE(RunUntil([&] { return closed; }));
      exec_.reset();
      uv_run(&loop_, UV_RUN_DEFAULT);
      EXPECT_EQ(0, uv_loop_close(&loop_)) << "a handle leaked";
    }
  }

  bool RunUntil(const std::function<bool()>& cond, int seconds = 20) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (!cond()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      uv_run(&loop_, UV_RUN_NOWAIT);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }

  // Posts a submit; its result lands in results_[index].
  void PostSubmit(size_t index, const JobSpec& spec) {
    exec_->Write([spec](JobStore& s) { return s.Submit(spec, 1000); },
                 [this, index](Result<SubmitResult> r) {
                   if (results_.size() <= index) results_.resize(index + 1, Status(Code::kInternal, "unset"));
                   results_[index] = r.ok() ? Result<int64_t>(r->job.id) : Result<int64_t>(r.status());
                   order_.push_back(index);
                 });
  }

  TempDir dir_;
  Config::Store cfg_;
  uv_loop_t loop_{};
  std::unique_ptr<SqliteStore> writer_, reader_, check_;
  std::unique_ptr<StoreExecutor> exec_;
  std::vector<Result<int64_t>> results_;
  std::vector<size_t> order_;
};

TEST_F(StoreExecutorTest, WritesThatWaitForACommitAreCommittedTogetherInPostingOrder) {
  Open();
  RawDb other(cfg_.path);
  ASSERT_EQ(SQLITE_OK, other.Exec("BEGIN IMMEDIATE"));  // the writer blocks in its first BEGIN
  constexpr size_t kWrites = 200;
  for (size_t i = 0; i < kWrites; ++i) PostSubmit(i, Spec({"/bin/echo", std::to_string(i)}));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_TRUE(order_.empty()) << "a write was acknowledged while another connection held the lock";
  ASSERT_EQ(SQLITE_OK, other.Exec("COMMIT"));
  ASSERT_TRUE(RunUntil([&] { return order_.size() == kWrites; }));

  for (size_t i = 0; i < kWrites; ++i) {
    ASSERT_TRUE(results_[i].ok()) << i << ": " << results_[i].status().ToString();
    EXPECT_EQ(order_[i], i) << "results came back out of posting order";
    auto job = check_->GetJob(*results_[i]);
    ASSERT_TRUE(job.ok());
    EXPECT_EQ(job->argv.back(), std::to_string(i));
  }
  auto h = exec_->health();
  EXPECT_EQ(h.batched_writes, kWrites);
  // The first write went alone; the others waited behind it and shared
  // (at most max_batch per) commits.
  EXPECT_LE(h.batches, 3u) << "writes that queued up were not grouped";
  EXPECT_FALSE(h.last_write_failure.has_value());
}

TEST_F(StoreExecutorTest, AWriteThatFailsInsideAGroupLeavesTheOthersCommitted) {
  Open();
  RawDb other(cfg_.path);
  ASSERT_EQ(SQLITE_OK, other.Exec("BEGIN IMMEDIATE"));
  PostSubmit(0, Spec());
  std::optional<Status> cancel;
  exec_->Write([](JobStore& s) { return s.Cancel(424242, 1000); },
               [&](Result<CancelResult> r) { cancel = r.status(); });
  std::optional<Status> empty_argv;
  exec_->Write([](JobStore& s) { return s.Submit(JobSpec{}, 1000); },
               [&](Result<SubmitResult> r) { empty_argv = r.status(); });
  PostSubmit(1, Spec());
  ASSERT_EQ(SQLITE_OK, other.Exec("COMMIT"));
  ASSERT_TRUE(RunUntil([&] { return order_.size() == 2 && cancel && empty_argv; }));
  EXPECT_EQ(cancel->code(), Code::kNotFound);
  EXPECT_EQ(empty_argv->code(), Code::kInvalidArgument);
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(results_[i].ok()) << results_[i].status().ToString();
    EXPECT_TRUE(check_->GetJob(*results_[i]).ok());
  }
}

TEST_F(StoreExecutorTest, NoWriteIsAcknowledgedThatAFullDatabaseDidNotKeep) {
  Open();
  auto counts = check_->Counts();
  ASSERT_TRUE(counts.ok());
  // A file that fills up part way through the burst.
  ASSERT_TRUE(writer_->SetMaxPageCountForTest(40).ok());
  constexpr size_t kWrites = 300;
  std::string big(2000, 'x');
  for (size_t i = 0; i < kWrites; ++i) PostSubmit(i, Spec({"/bin/echo", big, std::to_string(i)}));
  ASSERT_TRUE(RunUntil([&] { return order_.size() == kWrites; }));
  size_t acknowledged = 0, full = 0;
  for (size_t i = 0; i < kWrites; ++i) {
    if (results_[i].ok()) {
      ++acknowledged;
      auto job = check_->GetJob(*results_[i]);
      ASSERT_TRUE(job.ok()) << "job " << *results_[i] << " was acknowledged but is not stored";
      EXPECT_EQ(job->argv.back(), std::to_string(i));
    } else {
      EXPECT_EQ(results_[i].status().code(), Code::kFull) << results_[i].status().ToString();
      ++full;
    }
  }
  EXPECT_GT(acknowledged, 0u);
  EXPECT_GT(full, 0u) << "the database never filled up; the test proves nothing";
  auto after = check_->Counts();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->queued - counts->queued, static_cast<int64_t>(acknowledged));
  auto h = exec_->health();
  ASSERT_TRUE(h.last_write_failure.has_value());
  EXPECT_EQ(h.last_write_failure->code(), Code::kFull);
}

TEST_F(StoreExecutorTest, ReadsAnswerWhileAnotherConnectionHoldsTheWriteLock) {
  Open(/*busy_timeout_ms=*/3000);
  int64_t id = test::MustSubmit(check_.get(), Spec());
  RawDb other(cfg_.path);
  ASSERT_EQ(SQLITE_OK, other.Exec("BEGIN IMMEDIATE"));
  std::optional<Status> write;
  exec_->Write([](JobStore& s) { return s.Submit(Spec(), 1000); },
               [&](Result<SubmitResult> r) { write = r.status(); });
  bool read = false;
  Status read_status;
  int64_t read_id = 0;
  exec_->Read([id](JobStore& s) { return s.GetJob(id); }, [&](Result<Job> r) {
    read = true;
    read_status = r.status();
    if (r.ok()) read_id = r->id;
  });
  ASSERT_TRUE(RunUntil([&] { return read; }));
  EXPECT_FALSE(write.has_value()) << "the write should still wait for the lock";
  ASSERT_TRUE(read_status.ok()) << read_status.ToString();
  EXPECT_EQ(read_id, id);
  EXPECT_EQ(1, exec_->health().pending_writes);

  // Past busy_timeout the write fails as the store's failure, and health says so.
  ASSERT_TRUE(RunUntil([&] { return write.has_value(); }));
  EXPECT_EQ(write->code(), Code::kBusy) << write->ToString();
  auto h = exec_->health();
  ASSERT_TRUE(h.last_write_failure.has_value());
  EXPECT_EQ(h.last_write_failure->code(), Code::kBusy);
  EXPECT_EQ(h.pending_writes, 0);

  ASSERT_EQ(SQLITE_OK, other.Exec("COMMIT"));
  write.reset();
  exec_->Probe([&](Status s) { write = s; });
  ASSERT_TRUE(RunUntil([&] { return write.has_value(); }));
  EXPECT_TRUE(write->ok()) << write->ToString();
  EXPECT_FALSE(exec_->health().last_write_failure.has_value()) << "a good probe clears the failure";
}

TEST_F(StoreExecutorTest, ClientWritesBeyondTheBoundAreRefusedAndTheSupervisorsAreNot) {
  StoreExecutor::Options options;
  options.max_pending_writes = 5;
  Open(5000, options);
  RawDb other(cfg_.path);
  ASSERT_EQ(SQLITE_OK, other.Exec("BEGIN IMMEDIATE"));
  int done = 0;
  auto submit = [](JobStore& s) { return s.Submit(Spec(), 1000); };
  auto count = [&](Result<SubmitResult> r) {
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    ++done;
  };
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(exec_->TryWrite(submit, count)) << i;
  EXPECT_FALSE(exec_->TryWrite(submit, count)) << "the sixth client write was taken";
  exec_->Write(submit, count);  // the supervisor's own writes always queue
  EXPECT_EQ(exec_->health().pending_writes, 6);
  ASSERT_EQ(SQLITE_OK, other.Exec("COMMIT"));
  ASSERT_TRUE(RunUntil([&] { return done == 6; }));
  EXPECT_TRUE(exec_->TryWrite(submit, count)) << "room again once the writes are done";
  ASSERT_TRUE(RunUntil([&] { return done == 7; }));
}

TEST_F(StoreExecutorTest, CloseDeliversEverythingPostedAndThenRefusesNewWork) {
  Open();
  constexpr size_t kWrites = 100;
  for (size_t i = 0; i < kWrites; ++i) PostSubmit(i, Spec());
  bool closed = false;
  exec_->Close([&] { closed = true; });
  std::optional<Status> late;
  exec_->Write([](JobStore& s) { return s.ProbeWritable(); }, [&](Status s) { late = s; });
  ASSERT_TRUE(RunUntil([&] { return closed; }));
  ASSERT_EQ(order_.size(), kWrites) << "close finished before every result was delivered";
  for (auto& r : results_) {
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(check_->GetJob(*r).ok());
  }
  ASSERT_TRUE(late.has_value());
  EXPECT_EQ(late->code(), Code::kUnavailable);
  exec_.reset();
  uv_run(&loop_, UV_RUN_DEFAULT);
  EXPECT_EQ(0, uv_loop_close(&loop_));
}

TEST_F(StoreExecutorTest, AnExceptionInStoreWorkBecomesAnInternalError) {
  Open();
  std::optional<Status> got;
  exec_->Write([](JobStore&) -> Status { throw std::runtime_error("boom"); },
               [&](Status s) { got = s; });
  PostSubmit(0, Spec());
  ASSERT_TRUE(RunUntil([&] { return got.has_value() && order_.size() == 1; }));
  EXPECT_EQ(got->code(), Code::kInternal);
  EXPECT_NE(got->message().find("boom"), std::string::npos);
  EXPECT_TRUE(results_[0].ok()) << "one write's exception must not fail its group";
}

// Api::GetJob and Api::Queue read "in one read" (JobView,
// QueueView) but the reader runs each statement in its own autocommit
// snapshot, so a commit of the writer thread between two of them shows a
// state that never existed: here a queued job with an open run, which
// JobWithRuns reports as blocked_by "open_run" (an I1 violation) although
// the job was simply claimed. The writer's commit is made by a third
// connection at the point the writer thread could make it.
TEST_F(StoreExecutorTest, AReadOfAJobAndItsRunsSeesOneSnapshot) {
  Open();
  int64_t id = test::MustSubmit(check_.get(), Spec());
  std::optional<JobStatus> status;
  size_t open_runs = 0;
  bool done = false;
  exec_->Read(
      [&, id](JobStore& s) -> Status {
        auto job = s.GetJob(id);
        if (!job.ok()) return job.status();
        ClaimRequest req;
        req.incarnation = "x";
        req.now_ms = 5000;
        req.max_concurrency = 10;
        auto claimed = check_->ClaimNext(req);  // the writer commits a claim meanwhile
        EXPECT_TRUE(claimed.ok() && claimed->has_value());
        auto runs = s.GetRuns(id);
        if (!runs.ok()) return runs.status();
        status = job->status;
        for (const auto& r : *runs) open_runs += r.ended_at ? 0 : 1;
        return Status::Ok();
      },
      [&](Status s) {
        EXPECT_TRUE(s.ok()) << s.ToString();
        done = true;
      });
  ASSERT_TRUE(RunUntil([&] { return done; }));
  ASSERT_TRUE(status.has_value());
  if (*status == JobStatus::kQueued) {
    EXPECT_EQ(0u, open_runs) << "one read saw the job queued and its run open: two snapshots";
  }
}



// /readyz is judged from health().last_write_failure, which any
// write that is not a store failure clears, even one that wrote nothing
// (a cancel of an unknown id: its empty group commits fine on a full disk).
// So on a full store /readyz says 200 again after any 404/409 write.
TEST_F(StoreExecutorTest, AWriteThatWroteNothingDoesNotMakeAFullStoreWritableAgain) {
  Open();
  ASSERT_TRUE(writer_->SetMaxPageCountForTest(40).ok());
  std::string big(2000, 'x');
  for (size_t i = 0; i < 100; ++i) PostSubmit(i, Spec({"/bin/echo", big}));
  ASSERT_TRUE(RunUntil([&] { return order_.size() == 100; }));
  ASSERT_TRUE(exec_->health().last_write_failure.has_value()) << "never filled up";
  std::optional<Status> cancel;
  exec_->Write([](JobStore& s) { return s.Cancel(424242, 1000); },
               [&](Result<CancelResult> r) { cancel = r.status(); });
  ASSERT_TRUE(RunUntil([&] { return cancel.has_value(); }));
  EXPECT_EQ(Code::kNotFound, cancel->code());
  std::optional<Status> submit;
  exec_->Write([&](JobStore& s) { return s.Submit(Spec({"/bin/echo", big}), 1000); },
               [&](Result<SubmitResult> r) { submit = r.status(); });
  ASSERT_TRUE(RunUntil([&] { return submit.has_value(); }));
  ASSERT_EQ(Code::kFull, submit->code()) << "the store is still full";
  EXPECT_TRUE(exec_->health().last_write_failure.has_value());
  // The point: between the two, health said "writable".
  cancel.reset();
  exec_->Write([](JobStore& s) { return s.Cancel(424242, 1000); },
               [&](Result<CancelResult> r) { cancel = r.status(); });
  ASSERT_TRUE(RunUntil([&] { return cancel.has_value(); }));
  EXPECT_TRUE(exec_->health().last_write_failure.has_value())
      << "a full store looks writable (ready) after a write that wrote nothing";
}

// GET /queue keeps its snapshot while data_commits() stands still: a write
// moves it before its result is delivered; a write probe does not.
TEST_F(StoreExecutorTest, DataCommitsCountWritesNotProbes) {
  Open();
  uint64_t before = exec_->data_commits();
  std::optional<Status> probed;
  exec_->Probe([&](Status s) { probed = s; });
  ASSERT_TRUE(RunUntil([&] { return probed.has_value(); }));
  ASSERT_TRUE(probed->ok()) << probed->ToString();
  EXPECT_EQ(before, exec_->data_commits()) << "a probe counted as a change";
  uint64_t seen_at_delivery = 0;
  exec_->Write([](JobStore& s) { return s.Submit(Spec({"/bin/true"}), 1000); },
               [&](Result<SubmitResult> r) {
                 EXPECT_TRUE(r.ok());
                 seen_at_delivery = exec_->data_commits();
               });
  ASSERT_TRUE(RunUntil([&] { return seen_at_delivery != 0; }));
  EXPECT_EQ(before + 1, seen_at_delivery);
}

}  // namespace
}  // namespace orch
