// The daemon's resident set after start-up.
#pragma once

#include <cstddef>
#include <string_view>

namespace orch {

// Unmaps from this process the resident pages of its read-only file
// mappings (code and constants of the binary and its libraries) that hold
// no private copy: they stay in the page cache and fault back in, from
// there, when touched again. Start-up (config parsing, the loader's own
// work) touches much code that serving never runs; this gives those pages
// back. Call it only while no other thread maps or unmaps read-only files
// (dlopen, dlclose): a mapping replaced between the read of smaps and the
// release would lose data.
// Returns the bytes released.
size_t ReleaseCleanFilePages();

// For tests: whether a /proc/<pid>/smaps entry may be released: read-only,
// backed by a file (the path column starts with '/'), without private
// copies, resident (Anonymous) or swapped out (Swap).
bool ReleasableMapping(std::string_view header, size_t anonymous_kib, size_t swap_kib);

}  // namespace orch
