// The daemon's resident set after start-up.
#pragma once

#include <cstddef>
#include <string_view>

namespace orch {

// Unmaps from this process the resident pages of its read-only file
// mappings (code and constants of the binary and its libraries) that hold
// no private copy: they stay in the page cache and fault back in, without
// I/O, when touched again. Start-up (config parsing, migrations, the
// loader's own work) touches much code that serving never runs; this gives
// those pages back. Returns the bytes released.
size_t ReleaseCleanFilePages();

// For tests: whether a /proc/<pid>/smaps entry may be released: read-only,
// backed by a file, without anonymous (copied-on-write) pages.
bool ReleasableMapping(std::string_view header, size_t anonymous_kib);

}  // namespace orch
