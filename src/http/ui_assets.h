// The status page's files (SPEC §13), embedded in the binary at build time
// from src/http/ui/ by cmake/embed_ui.cmake: no build step for users, and no
// request leaves the host.
#pragma once

#include <string_view>
#include <vector>

namespace orch {

struct UiAsset {
  std::string_view path;  // "/" for index.html, else "/ui/<file>"
  std::string_view content_type;
  std::string_view body;
  std::string_view etag;  // a strong ETag, quoted: the content's hash
};

const std::vector<UiAsset>& UiAssets();

}  // namespace orch
