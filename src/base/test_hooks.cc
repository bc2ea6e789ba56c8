#include "base/test_hooks.h"

#ifdef ORCH_TEST_HOOKS
#include <cstdlib>
#include <cstring>

namespace orch {

void KillPointForTest(const char* name) {
  static const char* wanted = std::getenv("ORCH_TEST_KILL_POINT");
  if (wanted != nullptr && std::strcmp(wanted, name) == 0) std::abort();
}

const char* TestHookValue(const char* name) { return std::getenv(name); }

}  // namespace orch
#endif
