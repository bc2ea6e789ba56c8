// The status page (SPEC §13): served from the binary, with its own policy,
// and driven in Debian's chromium by tests/ui/status_page.mjs.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "integration/daemon_harness.h"
#include "support/test_util.h"

namespace orch::test {
namespace {

using nlohmann::json;

constexpr const char* kPageCsp =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

TEST(StatusPage, IsServedFromTheBinaryWithoutTheTokenAndWithItsOwnPolicy) {
  TempDir dir;
  Daemon d(dir);
  ASSERT_TRUE(d.Start()) << d.Log();
  // A browser cannot send a bearer header on a navigation: the page and its
  // assets hold no data and need none. The API still does.
  HttpResult page = HttpCall("GET", d.url() + "/");
  ASSERT_EQ(200, page.status);
  EXPECT_EQ("text/html; charset=utf-8", page.Header("Content-Type"));
  EXPECT_NE(std::string::npos, page.body.find("<script src=\"/ui/app.js\""));
  EXPECT_EQ(std::string::npos, page.body.find("<script>")) << "no inline script";
  EXPECT_EQ(kPageCsp, page.Header("Content-Security-Policy"));
  EXPECT_EQ("nosniff", page.Header("X-Content-Type-Options"));
  EXPECT_EQ("no-referrer", page.Header("Referrer-Policy"));
  EXPECT_EQ("no-cache", page.Header("Cache-Control"));
  EXPECT_EQ(401, HttpCall("GET", d.url() + "/queue").status);

  std::string etag = page.Header("ETag");
  ASSERT_FALSE(etag.empty());
  HttpResult again = HttpCall("GET", d.url() + "/", "", {"If-None-Match: " + etag});
  EXPECT_EQ(304, again.status);
  EXPECT_TRUE(again.body.empty());

  HttpResult js = HttpCall("GET", d.url() + "/ui/app.js");
  ASSERT_EQ(200, js.status);
  EXPECT_EQ("text/javascript; charset=utf-8", js.Header("Content-Type"));
  EXPECT_EQ(ReadFile(std::string(ORCH_SOURCE_DIR) + "/src/http/ui/app.js"), js.body);
  EXPECT_EQ("text/css; charset=utf-8", HttpCall("GET", d.url() + "/ui/app.css").Header("Content-Type"));
  EXPECT_EQ("image/svg+xml", HttpCall("GET", d.url() + "/ui/icon.svg").Header("Content-Type"));
  EXPECT_NE(etag, js.Header("ETag"));

  EXPECT_EQ(404, HttpCall("GET", d.url() + "/ui/nope.js").status);
  EXPECT_EQ(304, HttpCall("GET", d.url() + "/", "", {"If-None-Match: \"x\", W/" + etag}).status);
  EXPECT_EQ(304, HttpCall("GET", d.url() + "/", "", {"If-None-Match: *"}).status);
  EXPECT_EQ(200, HttpCall("GET", d.url() + "/", "", {"If-None-Match: \"x\""}).status);
  // Only GET and HEAD of the page go without the token: anything else is
  // judged like any API request, before its body is read.
  EXPECT_EQ(401, HttpCall("POST", d.url() + "/", "{}", {"Content-Type: application/json"}).status);
  EXPECT_EQ(405, d.Post("/").status);
  // The DNS-rebinding guard covers the page as it covers the API.
  EXPECT_EQ(421, HttpCall("GET", d.url() + "/", "", {"Host: evil.example"}).status);
  EXPECT_EQ(403, HttpCall("GET", d.url() + "/", "", {"Origin: http://evil.example"}).status);
}

TEST(StatusPage, ServerUiFalseTurnsItOffAndLeavesTheApi) {
  TempDir dir;
  Daemon d(dir, "[server]\nui = false\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  HttpResult page = HttpCall("GET", d.url() + "/");
  EXPECT_EQ(404, page.status);
  EXPECT_NE(std::string::npos, page.body.find("server.ui = false")) << page.body;
  EXPECT_EQ(404, HttpCall("GET", d.url() + "/ui/app.js").status);
  EXPECT_EQ(200, d.Get("/queue").status);
}

bool Exists(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0;
}

// The whole page in a real browser against a real daemon. Skipped where
// chromium or playwright-core is missing, unless ORCH_REQUIRE_BROWSER=1
// (scripts/test.sh, which installs both).
TEST(StatusPage, InChromium) {
  const std::string ui_dir = std::string(ORCH_SOURCE_DIR) + "/tests/ui";
  const char* chromium_env = std::getenv("CHROMIUM");
  const std::string chromium = chromium_env ? chromium_env : "/usr/bin/chromium";
  bool have = Exists(chromium) && Exists(ui_dir + "/node_modules/playwright-core");
  const char* required = std::getenv("ORCH_REQUIRE_BROWSER");
  if (!have) {
    if (required && std::string(required) == "1") {
      FAIL() << "chromium (" << chromium << ") or " << ui_dir
             << "/node_modules/playwright-core is missing: scripts/setup.sh with "
                "ORCH_SETUP_TEST_DEPS=1 installs them";
    }
    GTEST_SKIP() << "no chromium or playwright-core here";
  }

  TempDir dir, open_dir;
  // The log cap is enforced on reaper ticks: 2 s apart, the page reads past
  // the cap of the flooding job before each cut.
  Daemon d(dir,
           "[supervisor]\nmax_concurrency = 5\nkill_grace_s = 2\nmax_log_bytes = 2048\n"
           "[reaper]\ninterval_ms = 2000\n");
  ASSERT_TRUE(d.Start()) << d.Log();
  Daemon open(open_dir, "[server]\ntoken_file = \"\"\n");
  ASSERT_TRUE(open.Start()) << open.Log();

  json ids;
  ids["sleeper"] = d.Submit({{"name", "seed-sleeper"}, {"argv", {"sleep", "300"}}, {"serial_key", "db"}});
  ASSERT_TRUE(d.WaitStatus(ids["sleeper"], "running"));
  ids["blocked"] = d.Submit({{"name", "seed-blocked"}, {"argv", {"true"}}, {"serial_key", "db"}});
  ids["bulk"] = {d.Submit({{"name", "seed-bulk-1"}, {"argv", {"true"}}, {"serial_key", "db"}}),
                 d.Submit({{"name", "seed-bulk-2"}, {"argv", {"true"}}, {"serial_key", "db"}})};
  ids["printer"] = d.Submit(
      {{"name", "seed-printer"},
       {"env", {{"API_KEY", "s3cret-value"}}},
       {"argv",
        {"sh", "-c",
         "echo printer-stderr-line >&2; echo '<b>not bold</b>'; "
         "i=0; while :; do i=$((i+1)); echo \"tick $i\"; sleep 0.2; done"}}});
  ids["flood"] = d.Submit(
      {{"name", "seed-flood"},
       {"argv", {"sh", "-c", "i=0; while :; do i=$((i+1)); echo \"flood line $i\"; sleep 0.02; done"}}});
  ids["failed"] = d.Submit({{"name", "seed-failed"},
                            {"argv", {"sh", "-c", "echo boom >&2; exit 3"}},
                            {"max_attempts", 1}});
  ids["ok"] = d.Submit({{"name", "seed-ok"}, {"argv", {"echo", "hello"}}});
  ASSERT_TRUE(d.WaitStatus(ids["printer"], "running"));
  ASSERT_TRUE(d.WaitStatus(ids["failed"], "failed"));
  ASSERT_TRUE(d.WaitStatus(ids["ok"], "succeeded"));

  const std::string shots =
      OrchestratorBinary().substr(0, OrchestratorBinary().rfind('/')) + "/ui-screenshots";
  // timeout(1): node and its chromium never outlive the test.
  CommandResult r = RunCommand({"timeout", "-k", "5", "240", "node", ui_dir + "/status_page.mjs"},
                               {"ORCH_URL=" + d.url(), "ORCH_TOKEN=" + d.Token(),
                                "ORCH_OPEN_URL=" + open.url(), "ORCH_JOBS=" + ids.dump(),
                                "ORCH_SCREENSHOTS=" + shots, "CHROMIUM=" + chromium});
  EXPECT_EQ(0, r.exit_code) << r.out << r.err;
  std::cout << r.out;
  for (const char* shot : {"token-prompt.png", "overview.png", "job.png", "jobs.png"}) {
    EXPECT_TRUE(Exists(shots + "/" + shot)) << shot;
  }
}

}  // namespace
}  // namespace orch::test
