// What only the PostgreSQL backend has to get right: opening and migrating a
// shared database, errors that name what was wrong, per-node concurrency, the
// serial gate across nodes, and a connection that drops.
#include "store/postgres/pg_store.h"

#include <thread>

#include <gtest/gtest.h>

#include "store/store_backends.h"

namespace orch::test {
namespace {

Config::Store PgConfig(const PgTestDatabase& db) {
  Config::Store c;
  c.backend = "postgres";
  c.url = db.url();
  c.busy_timeout_ms = 5000;
  return c;
}

std::unique_ptr<PgStore> MustOpenPg(const Config::Store& cfg) {
  auto r = PgStore::Open(cfg);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? std::move(r.value()) : nullptr;
}

ClaimRequest ClaimFor(const std::string& node, int64_t max_concurrency, int64_t now_ms = 2000) {
  ClaimRequest r = Claim(now_ms, max_concurrency);
  r.node_id = node;
  r.incarnation = node + "-inc";
  return r;
}

TEST(PgStore, OpenCreatesTheSchemaOnceAndRecordsItsVersion) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  auto cfg = PgConfig(db);
  int64_t id = 0;
  {
    auto store = MustOpenPg(cfg);
    ASSERT_NE(store, nullptr);
    id = MustSubmit(store.get(), Spec({"/bin/echo", "hi"}));
  }
  EXPECT_EQ(PgStore::kSchemaVersion, db.Int("SELECT version FROM schema_version"));
  auto again = MustOpenPg(cfg);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ((std::vector<std::string>{"/bin/echo", "hi"}), again->GetJob(id)->argv);
  EXPECT_EQ(1, db.Int("SELECT count(*) FROM schema_version"));
  for (const char* table : {"jobs", "runs", "nodes", "settings"}) {
    EXPECT_EQ(1, db.Int(std::string("SELECT count(*) FROM information_schema.tables WHERE "
                                     "table_name = '") + table + "'"))
        << table;
  }
  EXPECT_EQ(1, db.Int("SELECT count(*) FROM information_schema.columns WHERE "
                      "table_name = 'runs' AND column_name = 'node_id'"));
}

TEST(PgStore, NodesStartingTogetherMigrateOnce) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  auto cfg = PgConfig(db);
  std::vector<std::thread> threads;
  std::vector<Status> results(4);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      auto r = PgStore::Open(cfg);
      results[i] = r.status();
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& s : results) EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(PgStore::kSchemaVersion, db.Int("SELECT version FROM schema_version"));
}

TEST(PgStore, NewerSchemaIsRefusedWithClearMessage) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  auto cfg = PgConfig(db);
  { ASSERT_NE(MustOpenPg(cfg), nullptr); }
  ASSERT_EQ("", db.Exec("UPDATE schema_version SET version = 99"));
  auto r = PgStore::Open(cfg);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(Code::kCorrupt, r.status().code());
  EXPECT_NE(std::string::npos, r.status().message().find("schema version 99 is newer than this "
                                                         "binary supports"))
      << r.status().message();
}

TEST(PgStore, WithoutCreateADatabaseWithoutTheSchemaIsRefusedAndLeftEmpty) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  PgOpenOptions options;
  options.create = false;
  auto r = PgStore::Open(PgConfig(db), options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(Code::kNotFound, r.status().code());
  EXPECT_NE(std::string::npos, r.status().message().find("no orchestrator schema"));
  EXPECT_EQ(0, db.Int("SELECT count(*) FROM information_schema.tables WHERE "
                      "table_schema = 'public'"));
}

TEST(PgStore, ConnectionErrorsSayWhatWasWrong) {
  PgTestServer* server = PgTestServer::Get();
  ASSERT_NE(server, nullptr);
  Config::Store cfg;
  cfg.backend = "postgres";

  cfg.url = server->Url("no_such_database");
  auto missing = PgStore::Open(cfg);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(Code::kNotFound, missing.status().code()) << missing.status().ToString();
  EXPECT_NE(std::string::npos, missing.status().message().find("no_such_database"));

  cfg.url = server->Url("postgres") + "&user=nobody_here";
  auto role = PgStore::Open(cfg);
  ASSERT_FALSE(role.ok());
  EXPECT_EQ(Code::kPermission, role.status().code()) << role.status().ToString();
  EXPECT_NE(std::string::npos, role.status().message().find("nobody_here"));

  // Nothing listens there: the server is down or unreachable.
  cfg.url = "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2";
  auto down = PgStore::Open(cfg);
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(Code::kUnavailable, down.status().code()) << down.status().ToString();
  EXPECT_NE(std::string::npos, down.status().message().find("cannot connect to PostgreSQL"));

  // Not retried: the URL itself is wrong.
  for (const char* url : {"postgresql://[::1", "host=db port",
                          "postgresql://orch:p%40ss%word@127.0.0.1/q"}) {
    cfg.url = url;
    auto bad = PgStore::Open(cfg);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(Code::kInvalidArgument, bad.status().code()) << bad.status().ToString();
    EXPECT_NE(std::string::npos, bad.status().message().find("not a valid PostgreSQL URL"))
        << bad.status().ToString();
    EXPECT_EQ(std::string::npos, bad.status().message().find("ss%wo")) << "a password in the error";
  }
}

TEST(PgStore, MaxConcurrencyIsPerNode) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  auto a = MustOpenPg(PgConfig(db));
  auto b = MustOpenPg(PgConfig(db));
  for (int i = 0; i < 5; ++i) MustSubmit(a.get(), Spec());
  EXPECT_EQ("a", MustClaim(a.get(), ClaimFor("a", 2)).run.node_id);
  MustClaim(a.get(), ClaimFor("a", 2));
  EXPECT_FALSE(a->ClaimNext(ClaimFor("a", 2))->has_value()) << "node a is full";
  EXPECT_EQ("b", MustClaim(b.get(), ClaimFor("b", 2)).run.node_id) << "node b has its own slots";
  MustClaim(b.get(), ClaimFor("b", 2));
  EXPECT_FALSE(b->ClaimNext(ClaimFor("b", 2))->has_value());
  EXPECT_EQ(2, db.Int("SELECT count(*) FROM runs WHERE node_id = 'a' AND ended_at IS NULL"));
  EXPECT_EQ(2, db.Int("SELECT count(*) FROM runs WHERE node_id = 'b' AND ended_at IS NULL"));
  EXPECT_TRUE(a->CheckInvariants(InvariantLimits{2, true})->empty());
}

// Two nodes race for the same serial key: the database's unique index lets
// one in; the other skips the key and claims the next job instead of
// failing or waiting for the key.
TEST(PgStore, SerialKeyRaceBetweenNodesIsDecidedByTheIndexAndNeverWedges) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  auto a = MustOpenPg(PgConfig(db));
  auto b = MustOpenPg(PgConfig(db));
  int64_t k1 = MustSubmit(a.get(), Spec({"x"}, 0, "K"));
  int64_t k2 = MustSubmit(a.get(), Spec({"x"}, 0, "K"));
  int64_t free_job = MustSubmit(a.get(), Spec({"y"}));
  // Node a claims K inside a transaction that stays open: node b's snapshot
  // cannot see it, so b picks the second K job and meets a's row in the
  // unique index, where it waits for a to commit.
  std::optional<Claimed> first;
  std::optional<Result<std::optional<Claimed>>> second;
  std::thread other;
  Status group = a->InTransaction([&] {
    first = MustClaim(a.get(), ClaimFor("a", 10));
    other = std::thread([&] { second = b->ClaimNext(ClaimFor("b", 10)); });
    EXPECT_TRUE(WaitFor([&] {
      return db.Int("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = '" + db.name() + "'") == 1;
    })) << "node b never reached a's uncommitted claim";
  });
  other.join();
  ASSERT_TRUE(group.ok()) << group.ToString();
  EXPECT_EQ(k1, first->job.id);
  ASSERT_TRUE(second.has_value());
  ASSERT_TRUE(second->ok()) << second->status().ToString();
  ASSERT_TRUE((*second)->has_value());
  EXPECT_EQ(free_job, (**second)->job.id) << "the second K must be skipped, not claimed";
  EXPECT_EQ(2, db.Int("SELECT count(*) FROM runs"));
  EXPECT_EQ("queued", db.Texts("SELECT status FROM jobs WHERE id = " + std::to_string(k2))[0]);
  EXPECT_TRUE(a->CheckInvariants(InvariantLimits{0, true})->empty());
}

// A writer that lost its connection fails with kUnavailable, and the next
// call reconnects by itself.
TEST(PgStore, ADroppedConnectionIsReportedThenReestablished) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  auto store = MustOpenPg(PgConfig(db));
  int64_t id = MustSubmit(store.get(), Spec());
  ASSERT_EQ("", db.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                        "application_name = 'orchestrator' AND datname = '" + db.name() + "'"));
  auto lost = store->GetJob(id);
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(Code::kUnavailable, lost.status().code()) << lost.status().ToString();
  auto back = store->GetJob(id);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(1u, store->ConnForTest()->reconnects());
  // Inside a group the loss fails the whole group, and nothing half-commits.
  Status inner;
  ASSERT_EQ("", db.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                        "application_name = 'orchestrator' AND datname = '" + db.name() + "'"));
  Status group = store->InTransaction([&] { inner = store->SetPaused(true); });
  EXPECT_FALSE(group.ok());
  EXPECT_FALSE(*store->IsPaused());
}

// The lease protocol, step by step on the database's clock (the lease's
// end is moved with SQL, not waited for).
TEST(PgStore, LeasesFenceClaimsSpawnsAndLateEndsAndRescueClosesADeadNodesRuns) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  auto a = MustOpenPg(PgConfig(db));
  auto b = MustOpenPg(PgConfig(db));
  NodeClaim na{"a", "a-1", 60000, "test"}, nb{"b", "b-1", 60000, "test"};
  ASSERT_TRUE(a->AcquireNode(na).ok());
  ASSERT_TRUE(b->AcquireNode(nb).ok());
  // One live incarnation per node_id.
  auto again = b->AcquireNode(NodeClaim{"a", "a-2", 60000, "test"});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(Code::kConflict, again.status().code());
  EXPECT_NE(std::string::npos, again.status().message().find("a-1")) << again.status().message();
  // A re-exec's new incarnation takes the live lease of the one it follows,
  // and only that one's.
  NodeClaim follows{"a", "a-2", 60000, "test", "a-0"};
  EXPECT_EQ(Code::kConflict, b->AcquireNode(follows).status().code());
  follows.takes_over = "a-1";
  ASSERT_TRUE(b->AcquireNode(follows).ok());
  EXPECT_EQ(Code::kGuardMissed, a->RenewLease(na).status().code());
  na.takes_over = "a-2";
  ASSERT_TRUE(a->AcquireNode(na).ok());
  na.takes_over = "";

  int64_t id = MustSubmit(a.get(), Spec());
  ClaimRequest req = ClaimFor("a", 4);
  req.incarnation = "a-1";
  Claimed c = MustClaim(a.get(), req);
  ASSERT_TRUE(a->RecordSpawned(id, c.run.id, ProcessIdentity{"b", 1, 42, 7, 0}, "/l").ok());
  MustSubmit(a.get(), Spec());

  // a's lease runs out (by the database's clock).
  ASSERT_EQ("", db.Exec("UPDATE nodes SET lease_until = 0 WHERE node_id = 'a'"));
  EXPECT_FALSE(a->ClaimNext(req)->has_value()) << "a node out of lease claims nothing";
  auto nodes = b->ListNodes();
  ASSERT_TRUE(nodes.ok());
  ASSERT_EQ(2u, nodes->size());
  EXPECT_FALSE((*nodes)[0].alive());
  EXPECT_EQ(1, (*nodes)[0].running);
  EXPECT_TRUE((*nodes)[1].alive());

  // b rescues; a rescue never takes b's own runs, nor a live node's.
  RescueRequest rescue;
  rescue.self = "b";
  rescue.now_ms = 5000;
  rescue.retry_not_before = [](int64_t attempt) { return 5000 + attempt * 100; };
  auto rescued = b->RescueExpiredRuns(rescue);
  ASSERT_TRUE(rescued.ok()) << rescued.status().ToString();
  ASSERT_EQ(1u, rescued->size());
  EXPECT_EQ(c.run.id, (*rescued)[0].run_id);
  EXPECT_EQ(JobStatus::kQueued, (*rescued)[0].job_status);
  auto run = *b->GetRun(c.run.id);
  EXPECT_EQ(std::optional<std::string>("node_lost"), run->reason);
  EXPECT_EQ(5100, b->GetJob(id)->not_before) << "requeued with backoff, attempt spent";
  EXPECT_TRUE(b->RescueExpiredRuns(rescue)->empty()) << "rescued once only";

  // a wakes: its renewal says the lease had lapsed, its late end and a late
  // spawn record change nothing.
  auto renewed = a->RenewLease(na);
  ASSERT_TRUE(renewed.ok()) << renewed.status().ToString();
  EXPECT_TRUE(renewed->lapsed);
  RunEnd late = EndOf(c, RunOutcome::kSucceeded, 6000);
  EXPECT_EQ(Code::kGuardMissed, a->FinishRun(late).status().code());
  EXPECT_EQ(JobStatus::kQueued, a->GetJob(id)->status);

  // Spawn records are fenced by the lease too.
  Claimed c2 = MustClaim(a.get(), req);
  ASSERT_EQ("", db.Exec("UPDATE nodes SET lease_until = 0 WHERE node_id = 'a'"));
  EXPECT_EQ(Code::kGuardMissed,
            a->RecordSpawned(c2.job.id, c2.run.id, ProcessIdentity{"b", 1, 43, 8, 0}, "/l").code());
  // A renewal by an incarnation that no longer holds the row is refused.
  ASSERT_TRUE(b->AcquireNode(NodeClaim{"a", "a-2", 60000, "test"}).ok());
  EXPECT_EQ(Code::kGuardMissed, a->RenewLease(na).status().code());
}

// A statement that fails outside any write's savepoint aborts the group's
// transaction in PostgreSQL: the group must fail as a whole, never report a
// COMMIT that PostgreSQL turned into a ROLLBACK.
TEST(PgStore, AFailureOutsideASavepointFailsTheWholeGroup) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  auto store = MustOpenPg(PgConfig(db));
  Result<SubmitResult> first = Status(Code::kInternal, "not run"), after = first;
  Status group = store->InTransaction([&] {
    first = store->Submit(Spec(), 1000);
    auto bad = store->ConnForTest()->Query("SELECT * FROM no_such_table");
    EXPECT_FALSE(bad.ok());
    after = store->Submit(Spec(), 1000);
  });
  EXPECT_TRUE(first.ok()) << "the write before the failure ran";
  EXPECT_FALSE(after.ok()) << "nothing may run in an aborted transaction";
  EXPECT_FALSE(group.ok()) << "the group reported a commit that did not happen";
  EXPECT_EQ(0, db.Int("SELECT count(*) FROM jobs"));
  // The connection is usable again afterwards.
  EXPECT_TRUE(store->Submit(Spec(), 2000).ok());
  EXPECT_EQ(1, db.Int("SELECT count(*) FROM jobs"));
}

// A statement that waits on a row another client holds gives up after
// busy_timeout_ms with kBusy, instead of hanging the writer thread.
TEST(PgStore, ALockHeldElsewhereTimesOutAsBusy) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  auto cfg = PgConfig(db);
  cfg.busy_timeout_ms = 300;
  auto store = MustOpenPg(cfg);
  int64_t id = MustSubmit(store.get(), Spec());
  std::thread holder([&] {
    db.Exec("BEGIN; SELECT * FROM jobs WHERE id = " + std::to_string(id) +
            " FOR UPDATE; SELECT pg_sleep(1.5); COMMIT");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto cancel = store->Cancel(id, 3000);
  holder.join();
  ASSERT_FALSE(cancel.ok());
  EXPECT_EQ(Code::kBusy, cancel.status().code()) << cancel.status().ToString();
  EXPECT_EQ(JobStatus::kQueued, store->GetJob(id)->status);
  EXPECT_TRUE(store->Cancel(id, 3100).ok());
}

// Counts come from folded totals plus deltas; a fold changes nothing seen.
TEST(PgStore, CountsStayExactAcrossFolds) {
  PgTestDatabase db;
  ASSERT_TRUE(db.ok());
  auto store = MustOpenPg(PgConfig(db));
  for (int i = 0; i < 30; ++i) MustSubmit(store.get(), Spec());
  for (int i = 0; i < 10; ++i) {
    Claimed c = MustClaim(store.get(), Claim(2000));
    ASSERT_TRUE(store->FinishRun(EndOf(c, RunOutcome::kSucceeded, 2100)).ok());
  }
  auto before = *store->Counts();
  EXPECT_GT(db.Int("SELECT count(*) FROM job_count_deltas"), 0);
  ASSERT_TRUE(store->ProbeWritable().ok());
  EXPECT_EQ(0, db.Int("SELECT count(*) FROM job_count_deltas"));
  auto after = *store->Counts();
  EXPECT_EQ(20, after.queued);
  EXPECT_EQ(10, after.succeeded);
  EXPECT_EQ(before.queued, after.queued);
  EXPECT_EQ(before.succeeded, after.succeeded);
}

}  // namespace
}  // namespace orch::test
