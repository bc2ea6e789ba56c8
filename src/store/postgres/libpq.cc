#include "store/postgres/libpq.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

#include "base/test_hooks.h"

namespace orch {
namespace {

struct Loaded {
  libpq::Functions functions;
  std::string error;  // empty once loaded
};

// Never destroyed: a thread may still call libpq while the process exits.
const Loaded& Load() {
  static const Loaded* loaded = [] {
    auto* l = new Loaded;
    const char* name = TestHookValue("ORCH_TEST_LIBPQ");  // a library that is not there
    void* h = dlopen(name != nullptr ? name : "libpq.so.5", RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      const char* why = dlerror();
      l->error = std::string(why != nullptr ? why : "dlopen failed") +
                 " (install the Debian package libpq5)";
      return l;
    }
#define ORCH_LIBPQ_LOAD(name)                                                           \
  l->functions.name = reinterpret_cast<decltype(&::name)>(dlsym(h, #name));             \
  if (l->functions.name == nullptr && l->error.empty()) {                               \
    l->error = "the libpq.so.5 found has no " #name " (older than this build expects)"; \
  }
    ORCH_LIBPQ_FUNCTIONS(ORCH_LIBPQ_LOAD)
#undef ORCH_LIBPQ_LOAD
    return l;
  }();
  return *loaded;
}

}  // namespace

bool LoadLibpq(std::string* error) {
  const Loaded& l = Load();
  if (l.error.empty()) return true;
  *error = "cannot load libpq: " + l.error;
  return false;
}

namespace libpq {
const Functions& Get() {
  const Loaded& l = Load();
  if (!l.error.empty()) {
    std::fprintf(stderr, "orchestrator: cannot load libpq: %s\n", l.error.c_str());
    std::abort();
  }
  return l.functions;
}
}  // namespace libpq

}  // namespace orch
