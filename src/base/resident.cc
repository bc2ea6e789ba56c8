#include "base/resident.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace orch {

bool ReleasableMapping(std::string_view header, size_t anonymous_kib, size_t swap_kib) {
  // "start-end perms offset dev inode   path": five fields, then the path.
  size_t pos = 0;
  std::string_view perms;
  for (int field = 0; field < 5; ++field) {
    size_t end = header.find(' ', pos);
    if (end == std::string_view::npos) return false;
    if (field == 1) perms = header.substr(pos, end - pos);
    pos = header.find_first_not_of(' ', end);
    if (pos == std::string_view::npos) return false;
  }
  if (perms.size() != 4 || perms[0] != 'r' || perms[1] != '-') return false;  // writable
  if (header[pos] != '/') return false;  // anonymous, [vdso], [anon:...], ...
  return anonymous_kib == 0 && swap_kib == 0;
}

size_t ReleaseCleanFilePages() {
  struct Entry {
    uintptr_t start = 0, end = 0;
    std::string header;
    size_t anonymous_kib = SIZE_MAX, swap_kib = SIZE_MAX;  // unknown until read
  };
  std::vector<Entry> entries;
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  while (std::getline(smaps, line)) {
    size_t dash = line.find('-');
    size_t sp = line.find(' ');
    if (dash != std::string::npos && sp != std::string::npos && dash < sp &&
        line.find(':') > sp) {
      Entry e;
      e.start = std::strtoull(line.c_str(), nullptr, 16);
      e.end = std::strtoull(line.c_str() + dash + 1, nullptr, 16);
      e.header = line;
      entries.push_back(std::move(e));
    } else if (!entries.empty() && line.rfind("Anonymous:", 0) == 0) {
      entries.back().anonymous_kib = std::strtoull(line.c_str() + 10, nullptr, 10);
    } else if (!entries.empty() && line.rfind("Swap:", 0) == 0) {
      entries.back().swap_kib = std::strtoull(line.c_str() + 5, nullptr, 10);
    }
  }
  size_t released = 0;
  for (const auto& e : entries) {
    if (!ReleasableMapping(e.header, e.anonymous_kib, e.swap_kib)) continue;
    if (madvise(reinterpret_cast<void*>(e.start), e.end - e.start, MADV_DONTNEED) == 0) {
      released += e.end - e.start;
    }
  }
  return released;
}

}  // namespace orch
