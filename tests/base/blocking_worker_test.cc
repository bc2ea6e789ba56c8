#include "base/blocking_worker.h"

#include <uv.h>

#include <chrono>
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

TEST_F(BlockingWorkerTest, StopRunsWhatWasPostedAndRefusesMore) {
  ASSERT_TRUE(worker_.Start().ok());
  int ran = 0;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(worker_.Post(
        [&] {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
          ++ran;
        },
        [] {}));
  }
  worker_.Stop();
  EXPECT_EQ(5, ran);
  EXPECT_FALSE(worker_.Post([] {}, [] {}));
}

TEST_F(BlockingWorkerTest, NeverStartedRefusesWork) { EXPECT_FALSE(worker_.Post([] {}, [] {})); }

}  // namespace
}  // namespace orch
