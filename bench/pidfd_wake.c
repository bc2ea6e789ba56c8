// Machine baseline for exit detection: a parent spawns a child that stores
// CLOCK_MONOTONIC in shared memory and _exit(0)s; the parent waits in poll()
// on the child's pidfd (as the daemon's libuv loop does) and reads the clock
// when woken. Prints p50/p99/max of (woken - child's stamp) over N children.
//
//   cc -O2 -o pidfd_wake pidfd_wake.c && ./pidfd_wake 1000
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long NowNs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int Cmp(const void* a, const void* b) {
  long long x = *(const long long*)a, y = *(const long long*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  volatile long long* stamp =
      mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  long long* lat = calloc((size_t)n, sizeof *lat);
  for (int i = 0; i < n; ++i) {
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
      usleep(200);  // let the parent reach poll()
      *stamp = NowNs();
      _exit(0);
    }
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    struct pollfd p = {.fd = pfd, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1) return 2;
    lat[i] = NowNs() - *stamp;
    waitpid(pid, NULL, 0);
    close(pfd);
  }
  qsort(lat, (size_t)n, sizeof *lat, Cmp);
  printf("pidfd_wake n=%d p50=%.3f ms p99=%.3f ms max=%.3f ms\n", n, lat[n / 2] / 1e6,
         lat[n * 99 / 100] / 1e6, lat[n - 1] / 1e6);
  return 0;
}
