#include "supervisor/identity.h"
