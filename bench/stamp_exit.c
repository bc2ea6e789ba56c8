// Job used by the exit-detection benchmark: appends "<job> <mono_ns> <real_us>"
// (CLOCK_MONOTONIC ns and CLOCK_REALTIME µs, read as late as possible) to
// the file in argv[1], then _exit(0). O_APPEND writes of one short line are
// atomic, so concurrent jobs may share the file.
//
//   cc -O2 -o stamp_exit stamp_exit.c
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  int fd = open(argv[1], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return 3;
  const char* job = getenv("ORCH_JOB_ID");
  struct timespec m, r;
  char line[128];
  clock_gettime(CLOCK_REALTIME, &r);
  clock_gettime(CLOCK_MONOTONIC, &m);
  int n = snprintf(line, sizeof line, "%s %lld %lld\n", job ? job : "0",
                   (long long)m.tv_sec * 1000000000LL + m.tv_nsec,
                   (long long)r.tv_sec * 1000000LL + r.tv_nsec / 1000);
  if (write(fd, line, (size_t)n) != n) _exit(4);
  _exit(0);
}
