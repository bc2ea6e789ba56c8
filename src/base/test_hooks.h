// Kill points for crash tests (reliability issue): in builds with
// ORCH_TEST_HOOKS, ORCH_TEST_KILL_POINT=<name> makes the daemon abort() at
// that point. Compiled out otherwise.
#pragma once

namespace orch {

#ifdef ORCH_TEST_HOOKS
void KillPointForTest(const char* name);
#else
inline void KillPointForTest(const char*) {}
#endif

}  // namespace orch
