#include "base/resident.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace orch {

bool ReleasableMapping(std::string_view header, size_t anonymous_kib) {
  // "start-end perms offset dev inode   path"
  size_t sp = header.find(' ');
  if (sp == std::string_view::npos || header.size() < sp + 5) return false;
  std::string_view perms = header.substr(sp + 1, 4);
  if (perms[0] != 'r' || perms[1] != '-') return false;  // writable: may gain copies any time
  size_t slash = header.find('/');
  if (slash == std::string_view::npos) return false;  // anonymous, [vdso], [stack], ...
  return anonymous_kib == 0;
}

size_t ReleaseCleanFilePages() {
  struct Range {
    uintptr_t start, end;
    std::string header;
  };
  std::vector<Range> ranges;
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  std::vector<std::pair<Range, size_t>> entries;  // with their Anonymous: kB
  while (std::getline(smaps, line)) {
    size_t dash = line.find('-');
    size_t sp = line.find(' ');
    if (dash != std::string::npos && sp != std::string::npos && dash < sp &&
        line.find(':') > sp) {
      char* end = nullptr;
      uintptr_t start = std::strtoull(line.c_str(), &end, 16);
      uintptr_t stop = std::strtoull(line.c_str() + dash + 1, &end, 16);
      entries.push_back({{start, stop, line}, SIZE_MAX});
    } else if (line.rfind("Anonymous:", 0) == 0 && !entries.empty()) {
      entries.back().second = std::strtoull(line.c_str() + 10, nullptr, 10);
    }
  }
  size_t released = 0;
  for (const auto& [r, anon] : entries) {
    if (anon == SIZE_MAX || !ReleasableMapping(r.header, anon)) continue;
    if (madvise(reinterpret_cast<void*>(r.start), r.end - r.start, MADV_DONTNEED) == 0) {
      released += r.end - r.start;
    }
  }
  return released;
}

}  // namespace orch
