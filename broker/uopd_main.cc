// uopd: the federation broker daemon. Parses flags, starts a Node, waits for SIGTERM/SIGINT;
// SIGHUP reloads the policies.
#include <malloc.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <grpc/support/log.h>
#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "broker/config.h"
#include "broker/node.h"
#include "core/log.h"

namespace {

// Written atomically once the node serves, so scripts and tests wait on a file, not a sleep.
bool WriteReadyFile(const std::string& path, const uop::broker::Node& node,
                    const std::string& name) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << "{\"node\":\"" << name << "\",\"federation\":\"" << node.federation_address()
        << "\",\"admin\":\"" << node.admin_address() << "\",\"kafka_bootstrap\":\""
        << node.kafka_bootstrap() << "\",\"pid\":" << getpid() << "}\n";
    if (!out) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {  // NOLINT(bugprone-exception-escape): none are caught anyway
  // glibc gives every thread its own malloc arena; with one Kafka client and gRPC stream per
  // partition that multiplies resident memory for no speed we can measure. Two arenas suffice.
  mallopt(M_ARENA_MAX, 2);  // NOLINT(concurrency-mt-unsafe): before any thread starts
  // gRPC's own messages (e.g. a TLS handshake refused before our verifier runs: no client
  // certificate, plaintext) become JSON log lines like ours.
  gpr_set_log_function([](gpr_log_func_args* args) {
    const uop::log::Level level = args->severity == GPR_LOG_SEVERITY_ERROR ? uop::log::Level::kError
                                  : args->severity == GPR_LOG_SEVERITY_INFO
                                      ? uop::log::Level::kInfo
                                      : uop::log::Level::kDebug;
    uop::log::Write(
        level, "grpc",
        {{"message", args->message}, {"source", absl::StrCat(args->file, ":", args->line)}});
  });
  CLI::App app{"uopd: Urban Open Platform federation broker"};
  std::string config_path, ready_file, instance;
  bool check_only = false;
  app.add_option("-c,--config", config_path, "Node configuration (YAML)")->required();
  app.add_option("--ready-file", ready_file,
                 "Write {federation, admin, kafka_bootstrap, pid} as JSON here once serving");
  app.add_option("--instance", instance,
                 "This node among the city's nodes of the same name (overrides 'instance')");
  app.add_flag("--check", check_only, "Validate the configuration and policies, then exit");
  CLI11_PARSE(app, argc, argv);

  // Signals are taken by sigwait below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);  // reload the policies
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto config = uop::broker::LoadNodeConfig(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "uopd: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  if (!instance.empty()) {
    if (!uop::broker::IsValidInstance(instance)) {
      std::fprintf(stderr, "uopd: --instance: must be 1-100 letters, digits, '-', '_' or '.'\n");
      return 2;
    }
    config->instance = instance;
  }
  const std::string node_name = config->node;
  if (check_only) {
    std::set<std::string> peers;
    for (const auto& p : config->peers) peers.insert(p.name);
    auto policy = uop::policy::PolicySnapshot::LoadDirectory(config->policies_dir, peers);
    if (!policy.ok()) {
      std::fprintf(stderr, "uopd: %s\n", std::string(policy.status().message()).c_str());
      return 2;
    }
    std::printf("%s: ok (policies %s)\n", config_path.c_str(), (*policy)->version().c_str());
    return 0;
  }
  auto node = uop::broker::Node::Start(*std::move(config));
  if (!node.ok()) {
    std::fprintf(stderr, "uopd: %s\n", std::string(node.status().message()).c_str());
    return node.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;  // bad config: 2
  }
  if (!ready_file.empty() && !WriteReadyFile(ready_file, **node, node_name)) {
    std::fprintf(stderr, "uopd: cannot write ready file %s\n", ready_file.c_str());
    return 1;
  }
  int sig = 0;
  while (true) {
    sigwait(&signals, &sig);
    if (sig != SIGHUP) break;
    uop::log::Info("signal", {{"signal", "SIGHUP"}});
    (*node)->ReloadPolicies("SIGHUP");  // logs and reports its result itself
  }
  uop::log::Info("signal", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  (*node)->Shutdown();
  node->reset();
  return 0;
}
