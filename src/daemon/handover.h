// What one image of the daemon hands to the next across execve (SPEC §14):
// the runs it watches, with their fds, and the sockets it listens and
// serves on. The pid does not change, so every job stays our child: one
// that exits meanwhile waits as a zombie with its real status.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "http/server.h"
#include "supervisor/supervisor.h"

namespace orch {

struct Handover {
  std::string incarnation;  // the image that handed over
  // CLOCK_MONOTONIC just before the execve: the next image logs the pause.
  int64_t stopped_mono_ns = 0;
  uint64_t handovers = 0;  // re-execs so far, this one included
  int lock_fd = -1;        // the SQLite store's lock, held throughout
  HandedSockets sockets;
  std::vector<HandedRun> runs;

  // Every fd above, each once.
  std::vector<int> Fds() const;
};

std::string EncodeHandover(const Handover& h);
// kInvalidArgument naming what is wrong; never a partial hand-over.
Result<Handover> DecodeHandover(std::string_view text);

// A sealed memfd holding `text`.
Result<UniqueFd> WriteHandover(const std::string& text);
// Reads and decodes the hand-over in `fd` (from its start).
Result<Handover> ReadHandover(int fd);

// Sets or clears FD_CLOEXEC.
Status SetCloseOnExec(int fd, bool on);

}  // namespace orch
