// Text that came from outside (job names, argv, env, cwd, error messages)
// made safe to put on one line of a text log or a terminal. The one place
// that decides what "safe" means: the daemon's text log (base/log) and every
// human-readable client output (cli/) call it.
#pragma once

#include <string>
#include <string_view>

namespace orch {

// `text` with everything that could end a line or drive a terminal escaped,
// so that one value always stays one line and shows what it holds:
//   \n \r \t for those, \\ for a backslash (so the result is unambiguous),
//   \xNN for every other byte below 0x20 and for 0x7f (ESC is \x1b),
//   \xNN per byte for C1 controls written as UTF-8 (U+0080..U+009F; some
//   terminals act on them as on ESC [) and for bytes that are not valid UTF-8.
// Valid UTF-8 otherwise passes unchanged, so names in any script stay
// readable. The escapes are those of bash's $'...' quoting.
std::string EscapeControls(std::string_view text);

// True when EscapeControls(text) differs from `text`.
bool NeedsEscaping(std::string_view text);

}  // namespace orch
