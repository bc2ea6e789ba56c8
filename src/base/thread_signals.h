// Worker threads take no signals: every signal the daemon handles reaches
// the loop thread, so blocking them there (as a re-exec does before its
// execve) keeps them pending for the next image instead of losing them.
#pragma once

#include <pthread.h>
#include <signal.h>

namespace orch {

inline void BlockSignalsInThisThread() {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
}

}  // namespace orch
