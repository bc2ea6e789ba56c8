// Reading and verifying process identities (SPEC §1). Placeholder header:
// the implementation lands with the supervisor work.
#pragma once

#include "base/process_identity.h"
