// `uopctl audit ...`: the auditor's tools over audit directories and bundles (keygen, verify,
// query, prove, verify-proof, export, reconcile). Offline: nothing here talks to a node.
#pragma once

namespace uop::tools {

// argv[0] is "audit"; returns the process exit code (0 ok, 1 check failed, 2 usage).
int AuditMain(int argc, char** argv);

}  // namespace uop::tools
