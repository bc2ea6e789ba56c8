// The floor of the orchestrator's way of starting a job, without the daemon:
// per job what the launcher does to the kernel (a log directory and two log
// files, a memfd plan, report and gate pipes, the exec helper started with
// vfork semantics, the identity read from /proc) and, with a cgroup root, a
// cgroup made, entered before exec and removed after; then the gate is
// opened at once: no store, no commit, no event loop, no thread hand-over.
// Its rate next to raw_spawn.c's, in the same run, is the most the daemon
// could reach with this design on this machine (bench/README.md).
// With "prestart", each slot's next process is made (and held) while the
// slot's job runs and released as soon as that job is reaped: the most a
// daemon keeping a started helper per free slot could reach.
//
//   cc -O2 -o spawn_floor spawn_floor.c
//   ./spawn_floor N INFLIGHT HELPER LOGDIR [CGROUP_ROOT|-] [prestart]
// Prints "spawn_floor jobs=N inflight=K seconds=S rate=R".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double Now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void Die(const char* what) {
  perror(what);
  exit(1);
}

struct Proc {
  pid_t pid;
  long job;
  int gate;  // write end while held, -1 once released
};

struct Slot {
  struct Proc running, next;
};

static const char* cgroup_root;
static const char* log_dir;

static struct Proc Start(const char* helper, long job) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%ld", log_dir, job);
  if (mkdir(path, 0750) != 0 && errno != EEXIST) Die("mkdir log dir");
  int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) Die("open log dir");
  int out = openat(dir, "1.out", O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  int err = openat(dir, "1.err", O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (out < 0 || err < 0) Die("open log");
  close(dir);
  int report[2], gate[2];
  if (pipe2(report, O_CLOEXEC) != 0 || pipe2(gate, O_CLOEXEC) != 0) Die("pipe2");
  int plan = memfd_create("plan", MFD_CLOEXEC);
  if (plan < 0) Die("memfd_create");
  // GATE NOFILE_CUR NOFILE_MAX UID GID CWD NGROUPS NENV env... NCAND cand... NARGV argv...
  static const char fields[] = "5\0-\0-\0-\0-\0\0" "0\0" "1\0PATH=/usr/bin:/bin\0" "1\0/bin/true\0"
                               "1\0/bin/true";
  if (write(plan, fields, sizeof fields) != (ssize_t)sizeof fields) Die("write plan");
  lseek(plan, 0, SEEK_SET);

  int cg = -1;
  if (cgroup_root != NULL) {
    snprintf(path, sizeof path, "%s/run-%ld", cgroup_root, job);
    if (mkdir(path, 0755) != 0) Die("mkdir cgroup");
    cg = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg < 0) Die("open cgroup");
  }
  pid_t pid;
  char* argv[] = {"orchestrator-exec", "3", "4", NULL};
  char* envp[] = {NULL};
  if (cg >= 0) {
    // As the daemon does: created inside the cgroup (clone3
    // CLONE_INTO_CGROUP). A full copy, but of this small process.
    struct {
      unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size,
          tls, set_tid, set_tid_size, cgroup;
    } args = {0};
    args.flags = 0x200000000ULL; /* CLONE_INTO_CGROUP */
    args.exit_signal = SIGCHLD;
    args.cgroup = (unsigned long long)cg;
    pid = (pid_t)syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0) Die("clone3");
    if (pid == 0) {
      int null = open("/dev/null", O_RDONLY);
      if (setsid() < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0 ||
          dup2(plan, 3) < 0 || dup2(report[1], 4) < 0 || dup2(gate[0], 5) < 0) {
        _exit(126);
      }
      close_range(6, ~0U, 0);
      execve(helper, argv, envp);
      _exit(127);
    }
    close(cg);
  } else {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out, 1);
  posix_spawn_file_actions_adddup2(&fa, err, 2);
  posix_spawn_file_actions_adddup2(&fa, plan, 3);
  posix_spawn_file_actions_adddup2(&fa, report[1], 4);
  posix_spawn_file_actions_adddup2(&fa, gate[0], 5);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  int rc = posix_spawn(&pid, helper, &fa, &attr, argv, envp);
  if (rc != 0) {
    errno = rc;
    Die("posix_spawn");
  }
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  }
  close(out);
  close(err);
  close(plan);
  close(report[1]);
  close(gate[0]);

  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int stat = open(path, O_RDONLY | O_CLOEXEC);
  char buf[1024];
  if (stat < 0 || read(stat, buf, sizeof buf) <= 0) Die("read stat");
  close(stat);

  close(report[0]);
  struct Proc p = {pid, job, gate[1]};
  return p;
}

static void Release(struct Proc* p) {
  if (write(p->gate, "g", 1) != 1) Die("gate");
  close(p->gate);
  p->gate = -1;
}

static void Removed(long job) {
  if (cgroup_root == NULL) return;
  char path[4096];
  snprintf(path, sizeof path, "%s/run-%ld", cgroup_root, job);
  if (rmdir(path) != 0) Die("rmdir cgroup");
}

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: spawn_floor N INFLIGHT HELPER LOGDIR [CGROUP_ROOT|-] [prestart]\n");
    return 2;
  }
  long total = atol(argv[1]);
  long inflight = atol(argv[2]);
  const char* helper = argv[3];
  log_dir = argv[4];
  cgroup_root = argc > 5 && strcmp(argv[5], "-") != 0 ? argv[5] : NULL;
  int prestart = argc > 6 && strcmp(argv[6], "prestart") == 0;
  struct Slot* slots = calloc((size_t)inflight, sizeof *slots);
  long started = 0, done = 0;
  double t0 = Now();
  for (long i = 0; i < inflight && started < total; ++i) {
    slots[i].running = Start(helper, started++);
    Release(&slots[i].running);
    if (prestart && started < total) slots[i].next = Start(helper, started++);
  }
  while (done < total) {
    int st;
    pid_t pid = waitpid(-1, &st, 0);
    if (pid < 0) Die("waitpid");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      fprintf(stderr, "job exited with %d\n", st);
      return 1;
    }
    ++done;
    for (long i = 0; i < inflight; ++i) {
      struct Slot* sl = &slots[i];
      if (sl->running.pid != pid) continue;
      long ended = sl->running.job;
      sl->running.pid = 0;
      if (prestart) {
        if (sl->next.pid != 0) {
          sl->running = sl->next;
          Release(&sl->running);
          sl->next.pid = 0;
        }
        Removed(ended);
        if (started < total) sl->next = Start(helper, started++);
      } else {
        Removed(ended);
        if (started < total) {
          sl->running = Start(helper, started++);
          Release(&sl->running);
        }
      }
    }
  }
  double s = Now() - t0;
  printf("spawn_floor jobs=%ld inflight=%ld seconds=%.3f rate=%.0f\n", total, inflight, s,
         total / s);
  return 0;
}
