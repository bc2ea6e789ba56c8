// OpenJobStore: the backend-neutral way in for the daemon and the offline
// tools.
#include "store/job_store.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include "store/store_fixture.h"

namespace orch::test {
namespace {

TEST(OpenJobStore, CreatesAMissingStoreByDefault) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  auto store = OpenJobStore(cfg);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  int64_t id = MustSubmit(store->get(), Spec());
  auto job = (*store)->GetJob(id);
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(JobStatus::kQueued, job->status);
}

TEST(OpenJobStore, WithoutCreateRefusesAMissingStoreAndCreatesNothing) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  JobStoreOpenOptions options;
  options.create = false;
  options.background_maintenance = false;
  auto store = OpenJobStore(cfg, options);
  EXPECT_FALSE(store.ok());
  EXPECT_NE(0, access(dir.File("state").c_str(), F_OK)) << "must not create directories";
}

TEST(OpenJobStore, WithoutCreateOpensAnExistingStore) {
  TempDir dir;
  auto cfg = StoreConfigIn(dir);
  int64_t id = 0;
  {
    auto store = MustOpen(cfg);
    id = MustSubmit(store.get(), Spec());
  }
  JobStoreOpenOptions options;
  options.create = false;
  options.background_maintenance = false;
  auto store = OpenJobStore(cfg, options);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_TRUE((*store)->GetJob(id).ok());
}

}  // namespace
}  // namespace orch::test
