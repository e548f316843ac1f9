// `uopctl policy ...`: lint, explain, diff and test governance policies offline (no node, no
// Kafka), and `preview` (reads a live topic). `reload` and `status` need a running node:
// node_cmd.h.
#pragma once

namespace uop::tools {

// argv[0] is "policy". Returns the process exit code: 0 ok, 1 findings (lint errors, a diff, a
// failing case), 2 usage or unreadable input.
int PolicyMain(int argc, char** argv);

}  // namespace uop::tools
