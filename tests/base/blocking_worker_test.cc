#include "base/blocking_worker.h"

#include <uv.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace orch {
namespace {

class BlockingWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(0, uv_loop_init(&loop_)); }
  void TearDown() override {
    worker_.Stop();
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(0, uv_loop_close(&loop_)) << "a handle leaked";
  }
  bool RunUntil(const std::function<bool()>& cond) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!cond()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      uv_run(&loop_, UV_RUN_ONCE);
    }
    return true;
  }

  uv_loop_t loop_{};
  BlockingWorker worker_{&loop_, "test-worker"};
};

TEST_F(BlockingWorkerTest, WorkRunsOffTheLoopAndResultsComeBackInOrder) {
  ASSERT_TRUE(worker_.Start().ok());
  const auto loop_thread = std::this_thread::get_id();
  std::vector<int> results(50, -1);
  std::vector<int> delivered;
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(worker_.Post(
        [&, i] {
          EXPECT_NE(loop_thread, std::this_thread::get_id());
          results[i] = i * i;
        },
        [&, i] {
          EXPECT_EQ(loop_thread, std::this_thread::get_id());
          EXPECT_EQ(i * i, results[i]) << "delivered before its work ran";
          delivered.push_back(i);
        }));
  }
  ASSERT_TRUE(RunUntil([&] { return delivered.size() == 50; }));
  for (int i = 0; i < 50; ++i) EXPECT_EQ(i, delivered[i]);
}

TEST_F(BlockingWorkerTest, StopFinishesTheWorkInProgressDropsTheRestAndRefusesMore) {
  ASSERT_TRUE(worker_.Start().ok());
  std::atomic<bool> started{false}, release{false};
  std::atomic<int> ran{0};
  int delivered = 0;
  ASSERT_TRUE(worker_.Post(
      [&] {
        started = true;
        while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        ++ran;
      },
      [&] { ++delivered; }));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(worker_.Post([&] { ++ran; }, [&] { ++delivered; }));
  while (!started) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  // The first item is released once the stop has dropped the others.
  std::thread opener([&] {
    while (worker_.waiting() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    release = true;
  });
  worker_.Stop();
  opener.join();
  EXPECT_EQ(1, ran.load()) << "work that had not started ran during the stop";
  uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_EQ(0, delivered) << "a result was delivered after the stop";
  EXPECT_FALSE(worker_.Post([] {}, [] {}));
}

TEST_F(BlockingWorkerTest, AResultHandlerThatThrowsLeavesTheOthersDelivered) {
  ASSERT_TRUE(worker_.Start().ok());
  int delivered = 0;
  ASSERT_TRUE(worker_.Post([] {}, [] { throw std::runtime_error("boom"); }));
  ASSERT_TRUE(worker_.Post([] {}, [&] { ++delivered; }));
  ASSERT_TRUE(RunUntil([&] { return delivered == 1; }));
}

TEST_F(BlockingWorkerTest, NeverStartedRefusesWork) { EXPECT_FALSE(worker_.Post([] {}, [] {})); }

}  // namespace
}  // namespace orch
