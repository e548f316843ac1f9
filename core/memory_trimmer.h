// Hands memory that malloc holds free back to the kernel.
#pragma once

namespace uop::core {

// malloc_trim(0): glibc keeps what a burst freed in its per-thread arenas. After a 240 MB
// backlog at 600 partitions a receiver stayed at 732 MiB RSS of which 67 MiB were live (one
// malloc_trim through gdb), an owner at 505 of 90; uopd calls this every second
// (core::PeriodicThread). True if memory was returned; false, and nothing done, where the C
// library has no malloc_trim.
bool TrimFreeMemory();

}  // namespace uop::core
