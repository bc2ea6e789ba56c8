// libFuzzer target for the config loader: the input is a TOML file; the
// first line may carry environment overrides ("#env K=V;K=V"). Any input
// must end in a usable config or at least one error message, never a crash.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "config/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = [] {
    char tmpl[] = "/tmp/orch-config-fuzz-XXXXXX";
    int fd = mkstemp(tmpl);
    close(fd);
    return std::string(tmpl);
  }();
  std::string text(reinterpret_cast<const char*>(data), size);
  orch::ConfigInputs in;
  in.file = path;
  in.file_required = true;
  if (text.rfind("#env ", 0) == 0) {
    std::string line = text.substr(5, text.find('\n') - 5);
    size_t pos = 0;
    while (pos < line.size()) {
      size_t end = line.find(';', pos);
      if (end == std::string::npos) end = line.size();
      std::string kv = line.substr(pos, end - pos);
      size_t eq = kv.find('=');
      if (eq != std::string::npos) in.env[kv.substr(0, eq)] = kv.substr(eq + 1);
      pos = end + 1;
    }
  }
  FILE* f = std::fopen(path.c_str(), "wb");
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
  orch::LoadedConfig c = orch::LoadConfig(in);
  if (!c.ok()) {
    for (const auto& e : c.errors) {
      if (e.empty()) std::abort();
    }
  } else {
    (void)orch::DescribeConfig(c);
    if (c.config.supervisor.max_concurrency < 1) std::abort();
  }
  return 0;
}
