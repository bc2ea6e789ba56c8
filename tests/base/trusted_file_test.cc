#include "base/trusted_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "support/test_util.h"

namespace orch {
namespace {

class ReadFileForUserTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, mode_t mode) {
    std::string path = dir_.File(name);
    test::WriteFile(path, "[server]\n");
    EXPECT_EQ(0, chmod(path.c_str(), mode));
    return path;
  }
  test::TempDir dir_;
};

TEST_F(ReadFileForUserTest, OwnFileWritableOnlyByItsOwnerIsTrusted) {
  std::string path = Write("a.toml", 0644);
  auto f = ReadFileForUser(path, geteuid(), Symlinks::kRefuse);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ("[server]\n", f->text);
  EXPECT_EQ("", f->distrust);
}

TEST_F(ReadFileForUserTest, FileWritableByGroupOrOthersIsReadButNotTrusted) {
  auto f = ReadFileForUser(Write("a.toml", 0666), geteuid(), Symlinks::kRefuse);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ("[server]\n", f->text);
  EXPECT_EQ("writable by others (mode 0666)", f->distrust);
  f = ReadFileForUser(Write("b.toml", 0660), geteuid(), Symlinks::kFollow);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ("writable by its group (mode 0660)", f->distrust);
}

TEST_F(ReadFileForUserTest, FileOwnedBySomeoneElseIsNotTrusted) {
  std::string path = Write("a.toml", 0644);
  if (geteuid() == 0) {
    ASSERT_EQ(0, chown(path.c_str(), 65534, 65534));
    auto f = ReadFileForUser(path, 0, Symlinks::kRefuse);
    ASSERT_TRUE(f.ok()) << f.status().message();
    EXPECT_EQ("owned by uid 65534, not you or root", f->distrust);
  } else {
    // Our own file, judged for another (non-root) user.
    auto f = ReadFileForUser(path, geteuid() + 1, Symlinks::kRefuse);
    ASSERT_TRUE(f.ok()) << f.status().message();
    EXPECT_EQ("owned by uid " + std::to_string(geteuid()) + ", not you or root", f->distrust);
  }
}

TEST_F(ReadFileForUserTest, RootsFileIsTrustedByEveryone) {
  if (geteuid() != 0) GTEST_SKIP() << "needs a file owned by root";
  auto f = ReadFileForUser(Write("a.toml", 0644), 1000, Symlinks::kRefuse);
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ("", f->distrust);
}

TEST_F(ReadFileForUserTest, SymlinkIsRefusedOrFollowedAsAsked) {
  std::string target = Write("real.toml", 0644);
  std::string link = dir_.File("link.toml");
  ASSERT_EQ(0, symlink(target.c_str(), link.c_str()));
  auto refused = ReadFileForUser(link, geteuid(), Symlinks::kRefuse);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(Code::kPermission, refused.status().code());
  EXPECT_EQ("a symbolic link", refused.status().message());
  auto followed = ReadFileForUser(link, geteuid(), Symlinks::kFollow);
  ASSERT_TRUE(followed.ok()) << followed.status().message();
  EXPECT_EQ("", followed->distrust);  // judged by its target
}

TEST_F(ReadFileForUserTest, FifoIsRefusedWithoutBlocking) {
  std::string path = dir_.File("fifo");
  ASSERT_EQ(0, mkfifo(path.c_str(), 0644));
  auto f = ReadFileForUser(path, geteuid(), Symlinks::kRefuse);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ("not a regular file", f.status().message());
}

TEST_F(ReadFileForUserTest, MissingFileIsNotFound) {
  auto f = ReadFileForUser(dir_.File("none.toml"), geteuid(), Symlinks::kRefuse);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(Code::kNotFound, f.status().code());
}

}  // namespace
}  // namespace orch
