#include "base/resident.h"

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

namespace orch {
namespace {

size_t StatusKib(const std::string& key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stoul(line.substr(key.size() + 1));
  }
  return 0;
}

TEST(Resident, OnlyReadOnlyFileMappingsWithoutCopiesAreReleasable) {
  const char* text = "7f00-7f10 r-xp 00000000 08:01 12                 /usr/lib/libc.so.6";
  const char* rodata = "7f00-7f10 r--p 00001000 08:01 12 /usr/lib/libc.so.6";
  EXPECT_TRUE(ReleasableMapping(text, 0, 0));
  EXPECT_TRUE(ReleasableMapping(rodata, 0, 0));
  EXPECT_TRUE(ReleasableMapping("7f00-7f10 r--p 00000000 08:01 12 /opt/my lib/a b.so (deleted)", 0, 0));
  EXPECT_FALSE(ReleasableMapping(rodata, 4, 0))
      << "relocated (RELRO) pages are private copies: dropping them loses the relocation";
  EXPECT_FALSE(ReleasableMapping(rodata, 0, 8)) << "private copies swapped out are copies too";
  EXPECT_FALSE(ReleasableMapping("7f00-7f10 rw-p 00001000 08:01 12 /usr/lib/libc.so.6", 0, 0))
      << "a writable mapping may gain a copy between the read and the release";
  EXPECT_FALSE(ReleasableMapping("7f00-7f10 r-xp 00000000 00:00 0 [vdso]", 0, 0));
  EXPECT_FALSE(ReleasableMapping("7f00-7f10 r--p 00000000 00:00 0 [anon:a/b]", 0, 0));
  EXPECT_FALSE(ReleasableMapping("7f00-7f10 r--p 00000000 00:00 0 ", 0, 0));
  EXPECT_FALSE(ReleasableMapping("garbage", 0, 0));
  EXPECT_FALSE(ReleasableMapping(text, SIZE_MAX, 0)) << "no Anonymous: line read";
}

TEST(Resident, ReleasedPagesComeBackWhenUsed) {
  size_t before = StatusKib("RssFile");
  size_t released = ReleaseCleanFilePages();
  EXPECT_GT(released, 0u);
  size_t after = StatusKib("RssFile");
  EXPECT_LT(after, before) << "nothing left the resident set";
  // Code and constants of libc, libstdc++ and this binary still work.
  std::ostringstream out;
  out << "formatted " << 42 << ' ' << 2.5;
  EXPECT_EQ("formatted 42 2.5", out.str());
  char buf[32];
  snprintf(buf, sizeof buf, "%05d", 7);
  EXPECT_STREQ("00007", buf);
}

}  // namespace
}  // namespace orch
