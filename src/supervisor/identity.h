// Reading and verifying process identities (SPEC §1). A run is known by
// (boot_id, pid, start_time[, pidfs_ino]); a bare pid proves nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/process_identity.h"
#include "base/status.h"
#include "store/job.h"
#include "supervisor/pidfd.h"

namespace orch {

// This boot's id from /proc/sys/kernel/random/boot_id (cached after the
// first successful read).
Result<std::string> CurrentBootId();

// Inode of /proc/self/ns/pid (a hint of which pid namespace pids belong to).
uint64_t CurrentPidNsIno();

// Field 22 (starttime) of a /proc/<pid>/stat line, parsed after the LAST ')'
// so that command names with spaces, parentheses or newlines cannot shift
// the fields. nullopt when the text is malformed.
std::optional<uint64_t> ParseStatStartTime(std::string_view stat_text);

// Reads /proc/<pid>/stat and returns its start time; kNotFound when gone.
Result<uint64_t> ReadStartTime(int64_t pid);

// pidfs inode of a pidfd when the fd lives on pidfs (kernel 6.9+; before that
// all pidfds share one anon inode and the value is meaningless): else 0.
uint64_t PidfsInode(int pidfd);

// Identity of a process we hold a pidfd for (just spawned, or verified).
Result<ProcessIdentity> IdentityOf(int64_t pid, int pidfd);

enum class GoneReason { kBootChanged, kPidGone, kStartTimeMismatch };
const char* GoneReasonName(GoneReason r);  // "boot_changed", "pid_gone", "start_time_mismatch"

struct VerifyResult {
  // Valid when the process is the recorded one, or its zombie (gone, but
  // its parent may still reap it through this pidfd).
  Pidfd pidfd;
  std::optional<GoneReason> gone;  // set when it does not run any more
};

// Opens a pidfd for id.pid FIRST, then reads /proc/<pid>/stat, then checks
// the pidfd has not exited in between; compares boot id, start time and (when
// both sides have one) the pidfs inode. A pid reused by another process can
// never verify. Errors other than "gone" (e.g. EMFILE) are returned as Status.
Result<VerifyResult> Verify(const ProcessIdentity& id);

// Whether a run's recorded process still lives (Verify; false for a run
// without a recorded pid). A RunProcessCheck for SanitizeImpossibleQueued.
Result<bool> RunProcessLives(const Run& run);

}  // namespace orch
