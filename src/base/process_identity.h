// Who a run's process is, beyond its pid (SPEC §1). Plain data: recorded by
// the store, read and verified by src/supervisor/identity.h.
#pragma once

#include <cstdint>
#include <string>

namespace orch {

struct ProcessIdentity {
  std::string boot_id;     // /proc/sys/kernel/random/boot_id
  uint64_t pidns_ino = 0;  // inode of /proc/self/ns/pid of the spawner (a hint)
  int64_t pid = 0;
  uint64_t start_time = 0;  // field 22 of /proc/<pid>/stat, clock ticks since boot
  uint64_t pidfs_ino = 0;   // inode of the pidfd on pidfs (kernel 6.9+), else 0

  bool operator==(const ProcessIdentity&) const = default;
};

}  // namespace orch
