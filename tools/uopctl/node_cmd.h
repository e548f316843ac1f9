// Commands that talk to a running uopd over its admin endpoint (HTTP, local by default):
// `uopctl status` and `uopctl policy reload|status`.
#pragma once

namespace uop::tools {

// argv[0] is "status". The node's readiness, policy in force, shares and the datasets it receives
// with their terms. Exit 0 ready, 1 not ready or unreachable, 2 usage.
int StatusMain(int argc, char** argv);

// argv[0] is "reload" or "status" (after "policy"). reload: exit 0 loaded or unchanged, 1 refused
// (the last good set stays), 2 usage or unreachable. status: exit 0, 1 if the last attempt was
// refused, 2 usage or unreachable.
int PolicyNodeMain(int argc, char** argv);

}  // namespace uop::tools
