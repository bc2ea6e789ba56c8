// The process logger writes one event per line, whatever the data holds.
#include "base/log.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include <gtest/gtest.h>

#include "support/test_util.h"

namespace orch::log {
namespace {

// What `write` put on stderr.
template <typename F>
std::string CaptureStderr(F write) {
  test::TempDir dir;
  std::string path = dir.File("stderr");
  std::fflush(stderr);
  int saved = dup(STDERR_FILENO);
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  dup2(fd, STDERR_FILENO);
  close(fd);
  write();
  std::fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  return test::ReadFile(path);
}

size_t Lines(const std::string& s) {
  return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

const std::string kForged = "2026-01-01T00:00:00.000Z error forged line";

TEST(Log, TextFormatKeepsAnEventOnOneLineAndEscapesControlCharacters) {
  ASSERT_TRUE(log::Setup("info", "text").ok());
  std::string out = CaptureStderr([&] {
    Info("job submitted\r\nfake", {{"job_id", 7},
                                   {"name", "x\n" + kForged},
                                   {"argv", nlohmann::json::array({"a\nb", "\x1b[31m\x7f"})}});
  });
  EXPECT_EQ(1u, Lines(out)) << out;
  EXPECT_EQ(std::string::npos, out.find('\x1b')) << out;
  EXPECT_EQ(std::string::npos, out.find('\x7f')) << out;
  EXPECT_NE(std::string::npos,
            out.find(" info job submitted\\r\\nfake job_id=7 name=x\\n" + kForged))
      << out;
  // Other values print as JSON, which has its own escapes.
  EXPECT_NE(std::string::npos, out.find(R"(argv=["a\nb","\u001b[31m\u007f"])")) << out;
}

TEST(Log, JsonFormatIsOneObjectPerLineThatKeepsTheExactText) {
  ASSERT_TRUE(log::Setup("info", "json").ok());
  std::string name = "x\n" + kForged + "\x1b[31m\\";
  std::string out = CaptureStderr([&] { Info("job submitted", {{"name", name}}); });
  ASSERT_TRUE(log::Setup("info", "text").ok());
  EXPECT_EQ(1u, Lines(out)) << out;
  EXPECT_EQ(std::string::npos, out.find('\x1b')) << out;
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << out;
  EXPECT_EQ(name, j.value("name", ""));
  EXPECT_EQ("job submitted", j.value("msg", ""));
}

}  // namespace
}  // namespace orch::log
