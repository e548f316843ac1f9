// uopctl status, uopctl policy reload|status: HTTP to a node's admin endpoint (cpp-httplib).
#include "tools/uopctl/node_cmd.h"

#include <httplib.h>
#include <simdjson.h>

#include <cstdio>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "broker/config.h"

namespace uop::tools {
namespace {

struct Target {
  std::string admin;   // host:port
  std::string config;  // or: the node's config file, whose `admin` is used
};

void AddTarget(CLI::App* cmd, Target* t) {
  cmd->add_option("--admin", t->admin, "The node's admin address host:port");
  cmd->add_option("--config", t->config, "Take the admin address from this node config");
}

std::optional<std::string> AdminAddress(const Target& t) {
  if (!t.admin.empty()) return t.admin;
  if (t.config.empty()) {
    std::fprintf(stderr, "uopctl: give --admin HOST:PORT or --config node.yaml\n");
    return std::nullopt;
  }
  auto cfg = broker::LoadNodeConfig(t.config);
  if (!cfg.ok()) {
    std::fprintf(stderr, "uopctl: %s\n", std::string(cfg.status().message()).c_str());
    return std::nullopt;
  }
  if (cfg->admin.ends_with(":0")) {
    std::fprintf(stderr, "uopctl: %s: admin '%s' is any free port; give --admin HOST:PORT\n",
                 t.config.c_str(), cfg->admin.c_str());
    return std::nullopt;
  }
  return cfg->admin;
}

struct Reply {
  int status = 0;  // 0: no answer
  std::string body;
  std::string error;
};

Reply Call(const std::string& address, const std::string& method, const std::string& path) {
  Reply r;
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port)) {
    r.error = absl::StrCat("admin address '", address, "' is not host:port");
    return r;
  }
  httplib::Client client(address.substr(0, colon), port);
  client.set_connection_timeout(5);
  client.set_read_timeout(30);
  httplib::Result res = method == "POST" ? client.Post(path) : client.Get(path);
  if (!res) {
    r.error = absl::StrCat("no answer from ", address, path, ": ", httplib::to_string(res.error()));
    return r;
  }
  r.status = res->status;
  r.body = res->body;
  return r;
}

std::string Str(simdjson::ondemand::value v) {
  simdjson::ondemand::json_type type;
  if (v.type().get(type) != simdjson::SUCCESS) return "?";
  std::string_view s;
  if (type == simdjson::ondemand::json_type::string) {
    return v.get_string().get(s) == simdjson::SUCCESS ? std::string(s) : "?";
  }
  if (type == simdjson::ondemand::json_type::null) return "-";
  if (simdjson::to_json_string(v).get(s) != simdjson::SUCCESS) return "?";
  return std::string(s);
}

// Field `key` of `obj` as text ("-" if absent or null).
std::string Field(simdjson::ondemand::object obj, std::string_view key) {
  simdjson::ondemand::value v;
  if (obj.find_field_unordered(key).get(v) != simdjson::SUCCESS) return "-";
  return Str(v);
}

int PolicyReload(const std::string& address) {
  Reply r = Call(address, "POST", "/policy/reload");
  if (r.status == 0) {
    std::fprintf(stderr, "uopctl: %s\n", r.error.c_str());
    return 2;
  }
  simdjson::ondemand::parser parser;
  simdjson::padded_string json(r.body);
  simdjson::ondemand::document doc;
  simdjson::ondemand::object obj;
  if (parser.iterate(json).get(doc) != simdjson::SUCCESS ||
      doc.get_object().get(obj) != simdjson::SUCCESS) {
    std::fprintf(stderr, "uopctl: unexpected answer (%d): %s\n", r.status, r.body.c_str());
    return 2;
  }
  const std::string ok = Field(obj, "ok"), changed = Field(obj, "changed");
  const std::string version = Field(obj, "version"), error = Field(obj, "error");
  if (ok != "true") {
    std::printf("refused: %s\nin force: %s (unchanged)\n", error.c_str(), version.c_str());
    return 1;
  }
  std::printf("%s: %s\n", changed == "true" ? "loaded" : "unchanged", version.c_str());
  simdjson::ondemand::array warnings;
  if (obj.find_field_unordered("warnings").get_array().get(warnings) == simdjson::SUCCESS) {
    for (auto w : warnings) {
      simdjson::ondemand::value v;
      if (w.get(v) == simdjson::SUCCESS) std::printf("warning: %s\n", Str(v).c_str());
    }
  }
  return 0;
}

int PolicyStatus(const std::string& address) {
  Reply r = Call(address, "GET", "/policy/status");
  if (r.status != 200) {
    std::fprintf(stderr, "uopctl: %s\n", r.status == 0 ? r.error.c_str() : r.body.c_str());
    return 2;
  }
  simdjson::ondemand::parser parser;
  simdjson::padded_string json(r.body);
  simdjson::ondemand::document doc;
  simdjson::ondemand::object obj;
  if (parser.iterate(json).get(doc) != simdjson::SUCCESS ||
      doc.get_object().get(obj) != simdjson::SUCCESS) {
    std::fprintf(stderr, "uopctl: unexpected answer: %s\n", r.body.c_str());
    return 2;
  }
  std::printf("policy directory: %s\n", Field(obj, "dir").c_str());
  std::printf("in force: %s, loaded %s (%s)\n", Field(obj, "version").c_str(),
              Field(obj, "loaded_at").c_str(), Field(obj, "loaded_by").c_str());
  const bool last_ok = Field(obj, "last_attempt_ok") == "true";
  std::printf("last attempt: %s (%s): %s\n", Field(obj, "last_attempt_at").c_str(),
              Field(obj, "last_attempt_by").c_str(),
              last_ok ? "ok" : ("refused: " + Field(obj, "last_error")).c_str());
  simdjson::ondemand::array warnings;
  if (obj.find_field_unordered("warnings").get_array().get(warnings) == simdjson::SUCCESS) {
    for (auto w : warnings) {
      simdjson::ondemand::value v;
      if (w.get(v) == simdjson::SUCCESS) std::printf("warning: %s\n", Str(v).c_str());
    }
  }
  simdjson::ondemand::array shares;
  if (obj.find_field_unordered("shares").get_array().get(shares) == simdjson::SUCCESS) {
    std::printf("%-32s %-16s %-14s %s\n", "DATASET", "PEER", "STATE", "DEFINED IN");
    for (auto s : shares) {
      simdjson::ondemand::object share;
      if (s.get_object().get(share) != simdjson::SUCCESS) continue;
      const std::string dataset = Field(share, "dataset"), peer = Field(share, "peer");
      const std::string state = Field(share, "state"), file = Field(share, "file");
      std::printf("%-32s %-16s %-14s %s\n", dataset.c_str(), peer.c_str(), state.c_str(),
                  file.c_str());
    }
  }
  return last_ok ? 0 : 1;
}

}  // namespace

int PolicyNodeMain(int argc, char** argv) {
  const std::string what = argv[0];
  CLI::App app{what == "reload" ? "Reload a running node's policies (a bad set is refused)"
                                : "A running node's policy set: version, last reload, shares",
               "uopctl policy " + what};
  Target target;
  AddTarget(&app, &target);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  std::optional<std::string> address = AdminAddress(target);
  if (!address.has_value()) return 2;
  return what == "reload" ? PolicyReload(*address) : PolicyStatus(*address);
}

int StatusMain(int argc, char** argv) {
  CLI::App app{"A running node: readiness, policy in force, its shares and what it receives",
               "uopctl status"};
  Target target;
  AddTarget(&app, &target);
  bool json_out = false;
  app.add_flag("--json", json_out, "Print GET /datasets as it is");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  std::optional<std::string> address = AdminAddress(target);
  if (!address.has_value()) return 2;
  Reply ready = Call(*address, "GET", "/readyz");
  if (ready.status == 0) {
    std::fprintf(stderr, "uopctl: %s\n", ready.error.c_str());
    return 1;
  }
  Reply datasets = Call(*address, "GET", "/datasets");
  if (datasets.status != 200) {
    std::fprintf(stderr, "uopctl: GET /datasets: %d %s\n", datasets.status, datasets.body.c_str());
    return 1;
  }
  if (json_out) {
    std::fputs(datasets.body.c_str(), stdout);
    return ready.status == 200 ? 0 : 1;
  }
  simdjson::ondemand::parser parser;
  simdjson::padded_string json(datasets.body);
  simdjson::ondemand::document doc;
  simdjson::ondemand::object obj;
  if (parser.iterate(json).get(doc) != simdjson::SUCCESS ||
      doc.get_object().get(obj) != simdjson::SUCCESS) {
    std::fprintf(stderr, "uopctl: unexpected answer: %s\n", datasets.body.c_str());
    return 1;
  }
  std::string readiness = ready.body;
  while (!readiness.empty() && readiness.back() == '\n') readiness.pop_back();
  std::printf("node %s: %s\npolicy %s\n", Field(obj, "node").c_str(), readiness.c_str(),
              Field(obj, "policy_version").c_str());
  simdjson::ondemand::array shares;
  if (obj.find_field_unordered("shares").get_array().get(shares) == simdjson::SUCCESS) {
    std::printf("\nshares (what leaves):\n%-28s %-12s %-13s %-24s %-12s %-20s %s\n", "DATASET",
                "PEER", "STATE", "PURPOSE", "LICENCE", "VALID UNTIL", "RETENTION MS");
    for (auto s : shares) {
      simdjson::ondemand::object o;
      if (s.get_object().get(o) != simdjson::SUCCESS) continue;
      const std::string d = Field(o, "dataset"), p = Field(o, "peer"), st = Field(o, "state");
      const std::string pu = Field(o, "purpose"), l = Field(o, "licence");
      const std::string vu = Field(o, "valid_until"), r = Field(o, "retention_ms");
      std::printf("%-28s %-12s %-13s %-24s %-12s %-20s %s\n", d.c_str(), p.c_str(), st.c_str(),
                  pu.c_str(), l.c_str(), vu.c_str(), r.c_str());
    }
  }
  simdjson::ondemand::array imports;
  if (obj.find_field_unordered("imports").get_array().get(imports) == simdjson::SUCCESS) {
    std::printf("\nimports (what arrives):\n%-28s %-12s %-18s %-24s %-12s %-20s %s\n", "DATASET",
                "FROM", "STATE", "PURPOSE", "LICENCE", "VALID UNTIL", "RETENTION MS (APPLIED)");
    for (auto s : imports) {
      simdjson::ondemand::object o;
      if (s.get_object().get(o) != simdjson::SUCCESS) continue;
      const std::string d = Field(o, "dataset"), p = Field(o, "peer"), st = Field(o, "state");
      const std::string pu = Field(o, "purpose"), l = Field(o, "licence");
      const std::string vu = Field(o, "valid_until"), r = Field(o, "owner_retention_ms");
      const std::string applied = Field(o, "retention_ms_applied");
      std::printf("%-28s %-12s %-18s %-24s %-12s %-20s %s (%s)\n", d.c_str(), p.c_str(), st.c_str(),
                  pu.c_str(), l.c_str(), vu.c_str(), r.c_str(), applied.c_str());
    }
  }
  return ready.status == 200 ? 0 : 1;
}

}  // namespace uop::tools
