// Kill points for crash tests (reliability issue): in builds with
// ORCH_TEST_HOOKS, ORCH_TEST_KILL_POINT=<name> makes the daemon abort() at
// that point. Compiled out otherwise.
#pragma once

namespace orch {

#ifdef ORCH_TEST_HOOKS
void KillPointForTest(const char* name);
// The value of the environment variable `name`, or nullptr.
const char* TestHookValue(const char* name);
#else
inline void KillPointForTest(const char*) {}
inline const char* TestHookValue(const char*) { return nullptr; }
#endif

}  // namespace orch
