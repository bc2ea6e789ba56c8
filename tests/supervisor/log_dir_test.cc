#include "supervisor/log_dir.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "support/test_util.h"

namespace orch {
namespace {

using test::ReadFile;
using test::TempDir;
using test::WriteFile;

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(0, lstat(path.c_str(), &st)) << path;
  return st.st_mode & 07777;
}

class LogDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = LogDir::Open(root_.File("logs"));
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    logs_ = std::move(opened).value();
  }
  std::string Path(const std::string& rel) const { return root_.File("logs/" + rel); }

  TempDir root_;
  std::unique_ptr<LogDir> logs_;
};

TEST_F(LogDirTest, RunLogsAreFreshDaemonOwnedAppendOnlyFiles) {
  auto files = logs_->CreateRunLogs(7, 12);
  ASSERT_TRUE(files.ok()) << files.status().ToString();
  EXPECT_EQ(Path("7/12.out"), files->out_path);
  EXPECT_EQ(0750u, ModeOf(Path("")));
  EXPECT_EQ(0750u, ModeOf(Path("7")));
  EXPECT_EQ(0640u, ModeOf(Path("7/12.out")));
  EXPECT_EQ(0640u, ModeOf(Path("7/12.err")));
  EXPECT_NE(0, fcntl(files->out.get(), F_GETFL) & O_APPEND);
  ASSERT_EQ(3, write(files->err.get(), "err", 3));
  EXPECT_EQ("err", ReadFile(Path("7/12.err")));
}

TEST_F(LogDirTest, PlantedLinkAtALogNameIsRemovedNotFollowed) {
  TempDir outside;
  std::string victim = outside.File("victim");
  WriteFile(victim, "precious");
  ASSERT_EQ(0, mkdir(Path("3").c_str(), 0750));
  ASSERT_EQ(0, symlink(victim.c_str(), Path("3/4.out").c_str()));
  auto files = logs_->CreateRunLogs(3, 4);
  ASSERT_TRUE(files.ok()) << files.status().ToString();
  ASSERT_EQ(5, write(files->out.get(), "fresh", 5));
  EXPECT_EQ("precious", ReadFile(victim));
  EXPECT_EQ("fresh", ReadFile(Path("3/4.out")));
}

// A link or file at a job directory's name (planted while an older version
// let jobs write in log_dir) is replaced by a real directory, not followed,
// and a job's launch never stalls on it.
TEST_F(LogDirTest, PlantedLinkOrFileAtAJobDirectoryIsReplacedAndNothingLandsOutside) {
  TempDir outside;
  ASSERT_EQ(0, symlink(outside.path().c_str(), Path("9").c_str()));
  EXPECT_EQ(Code::kPermission, logs_->OpenForRead(9, 1, LogStream::kStdout).status().code())
      << "reading never follows it";
  auto files = logs_->CreateRunLogs(9, 1);
  ASSERT_TRUE(files.ok()) << files.status().ToString();
  struct stat st {};
  EXPECT_NE(0, stat(outside.File("1.out").c_str(), &st));
  ASSERT_EQ(0, lstat(Path("9").c_str(), &st));
  EXPECT_TRUE(S_ISDIR(st.st_mode));

  WriteFile(Path("10"), "a file in the way");
  ASSERT_TRUE(logs_->CreateRunLogs(10, 2).ok());
  ASSERT_EQ(0, lstat(Path("10").c_str(), &st));
  EXPECT_TRUE(S_ISDIR(st.st_mode));
}

TEST_F(LogDirTest, ReadingRefusesLinksFifosAndHardLinks) {
  ASSERT_TRUE(logs_->CreateRunLogs(5, 1).ok());
  TempDir outside;
  std::string secret = outside.File("secret");
  WriteFile(secret, "root only");

  ASSERT_EQ(0, unlink(Path("5/1.out").c_str()));
  ASSERT_EQ(0, symlink(secret.c_str(), Path("5/1.out").c_str()));
  auto linked = logs_->OpenForRead(5, 1, LogStream::kStdout);
  EXPECT_EQ(Code::kPermission, linked.status().code()) << linked.status().ToString();
  EXPECT_EQ(Code::kPermission, logs_->OpenForAppend(5, 1, LogStream::kStdout).status().code());

  // A FIFO must be refused without blocking the caller on open.
  ASSERT_EQ(0, unlink(Path("5/1.err").c_str()));
  ASSERT_EQ(0, mkfifo(Path("5/1.err").c_str(), 0640));
  EXPECT_EQ(Code::kPermission, logs_->OpenForRead(5, 1, LogStream::kStderr).status().code());
  EXPECT_EQ(Code::kPermission, logs_->OpenForAppend(5, 1, LogStream::kStderr).status().code());

  ASSERT_EQ(0, mkdir(Path("6").c_str(), 0750));
  ASSERT_EQ(0, link(secret.c_str(), Path("6/1.out").c_str()));
  EXPECT_EQ(Code::kPermission, logs_->OpenForRead(6, 1, LogStream::kStdout).status().code());

  EXPECT_EQ(Code::kNotFound, logs_->OpenForRead(8, 1, LogStream::kStdout).status().code());
  EXPECT_EQ("root only", ReadFile(secret));
}

TEST_F(LogDirTest, DirectoriesLeftWritableForJobsAreTakenBack) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  // What earlier versions left behind for run_as: log_dir 0770 with the job
  // group, job directories owned by the job user.
  ASSERT_EQ(0, chmod(Path("").c_str(), 0770));
  ASSERT_EQ(0, chown(Path("").c_str(), 0, 65534));
  ASSERT_EQ(0, mkdir(Path("2").c_str(), 0755));
  ASSERT_EQ(0, chown(Path("2").c_str(), 65534, 65534));

  auto reopened = LogDir::Open(Path(""));
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  EXPECT_EQ(0750u, ModeOf(Path("")));
  ASSERT_TRUE((*reopened)->CreateRunLogs(2, 1).ok());
  struct stat st {};
  ASSERT_EQ(0, stat(Path("2").c_str(), &st));
  EXPECT_EQ(0u, st.st_uid);
  EXPECT_EQ(0750u, st.st_mode & 07777);
}

TEST(LogCap, SmallFileIsUntouched) {
  TempDir dir;
  WriteFile(dir.File("a.log"), "hello\n");
  UniqueFd fd(open(dir.File("a.log").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
  auto r = EnforceLogCap(fd.get(), 6);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(0, *r);
  EXPECT_EQ("hello\n", ReadFile(dir.File("a.log")));
}

TEST(LogCap, LargeFileIsCutAndTheCutIsSaidAtTheEnd) {
  TempDir dir;
  std::string path = dir.File("a.log");
  WriteFile(path, std::string(1000, 'x'));
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
  auto r = EnforceLogCap(fd.get(), 100);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(900, *r);
  EXPECT_EQ(std::string(100, 'x'), ReadFile(path));
  ASSERT_TRUE(AppendLogCutNote(fd.get(), *r).ok());
  EXPECT_EQ(std::string(100, 'x') +
                "\n[orchestrator: output cut at the max_log_bytes limit; 900 bytes dropped]\n",
            ReadFile(path));
}

TEST(LogCap, NonPositiveLimitMeansNoCapAndZeroCutWritesNoNote) {
  TempDir dir;
  std::string path = dir.File("a.log");
  WriteFile(path, "abc");
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
  auto r = EnforceLogCap(fd.get(), 0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(0, *r);
  ASSERT_TRUE(AppendLogCutNote(fd.get(), 0).ok());
  EXPECT_EQ("abc", ReadFile(path));
}

// The cap works on the file the job writes, whatever now sits at its name.
TEST(LogCap, CappingThroughTheFdIgnoresASwappedName) {
  TempDir dir;
  std::string path = dir.File("run.out"), victim = dir.File("victim");
  WriteFile(path, std::string(500, 'x'));
  WriteFile(victim, std::string(500, 'v'));
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC));
  ASSERT_EQ(0, unlink(path.c_str()));
  ASSERT_EQ(0, symlink(victim.c_str(), path.c_str()));
  auto r = EnforceLogCap(fd.get(), 10);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(490, *r);
  EXPECT_EQ(std::string(500, 'v'), ReadFile(victim));
}

}  // namespace
}  // namespace orch
