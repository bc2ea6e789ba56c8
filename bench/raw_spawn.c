// Machine baseline for the supervisor benchmarks: posix_spawn + waitpid of a
// program (default /bin/true) N times with K children in flight, no pidfds,
// no database, no logs. Prints "raw_spawn jobs=N inflight=K seconds=S rate=R".
//
//   cc -O2 -o raw_spawn raw_spawn.c && ./raw_spawn 10000 2 [/bin/true]
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

extern char** environ;

static double Now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  long total = argc > 1 ? atol(argv[1]) : 10000;
  long inflight = argc > 2 ? atol(argv[2]) : 2;
  char* prog = argc > 3 ? argv[3] : "/bin/true";
  char* child_argv[] = {prog, NULL};
  long started = 0, done = 0, running = 0;
  double t0 = Now();
  while (done < total) {
    while (running < inflight && started < total) {
      pid_t pid;
      int rc = posix_spawn(&pid, prog, NULL, NULL, child_argv, environ);
      if (rc != 0) {
        fprintf(stderr, "posix_spawn: %d\n", rc);
        return 1;
      }
      ++started;
      ++running;
    }
    int st;
    if (waitpid(-1, &st, 0) > 0) {
      --running;
      ++done;
    }
  }
  double s = Now() - t0;
  printf("raw_spawn jobs=%ld inflight=%ld seconds=%.3f rate=%.0f\n", total, inflight, s, total / s);
  return 0;
}
