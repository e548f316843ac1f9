#include "core/memory_trimmer.h"

#include <cstdlib>  // defines __GLIBC__ on glibc (through <features.h>), checked below

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace uop::core {

bool TrimFreeMemory() {
#if defined(__GLIBC__)
  return malloc_trim(0) != 0;
#else
  return false;
#endif
}

}  // namespace uop::core
