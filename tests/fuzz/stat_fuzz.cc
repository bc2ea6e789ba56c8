// libFuzzer target for /proc/<pid>/stat parsing. The parser must never read
// outside the text, and a comm field cannot move the start time: the same
// tail after any prefix ending in ')' parses the same.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "supervisor/identity.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = orch::ParseStatStartTime(text);
  size_t close = text.rfind(')');
  if (parsed && close != std::string_view::npos) {
    // Whatever the command name holds, only what follows the last ')' counts.
    std::string other = "1 (x y) (z)" + std::string(text.substr(close + 1));
    auto again = orch::ParseStatStartTime(other);
    if (!again || *again != *parsed) std::abort();
  }
  return 0;
}
