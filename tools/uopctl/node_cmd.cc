// uopctl status, uopctl policy reload|status: HTTP to a node's admin endpoint (cpp-httplib).
#include "tools/uopctl/node_cmd.h"

#include <httplib.h>
#include <simdjson.h>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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

// One admin answer parsed as a JSON object; `obj` is valid while this lives.
struct JsonAnswer {
  simdjson::ondemand::parser parser;
  simdjson::padded_string json;
  simdjson::ondemand::document doc;
  simdjson::ondemand::object obj;
  bool Parse(const std::string& body) {
    json = simdjson::padded_string(body);
    return parser.iterate(json).get(doc) == simdjson::SUCCESS &&
           doc.get_object().get(obj) == simdjson::SUCCESS;
  }
};

void PrintWarnings(simdjson::ondemand::object obj) {
  simdjson::ondemand::array warnings;
  if (obj.find_field_unordered("warnings").get_array().get(warnings) != simdjson::SUCCESS) return;
  for (auto w : warnings) {
    simdjson::ondemand::value v;
    if (w.get(v) == simdjson::SUCCESS) std::printf("warning: %s\n", Str(v).c_str());
  }
}

// One table column: `field` of each row, left-aligned in `width` (0: the last column, as is),
// followed by " (<also>)" when `also` is set.
struct Column {
  const char* header;
  const char* field;
  int width = 0;
  const char* also = nullptr;
};

// The array `key` of `obj` as a table, after `title` (if any) and a header line.
void PrintTable(simdjson::ondemand::object obj, std::string_view key, const char* title,
                const std::vector<Column>& columns) {
  simdjson::ondemand::array rows;
  if (obj.find_field_unordered(key).get_array().get(rows) != simdjson::SUCCESS) return;
  auto cell = [](const Column& c, const std::string& text) {
    return c.width > 0 ? absl::StrFormat("%-*s ", c.width, text) : text;
  };
  std::string line = title;
  for (const Column& c : columns) line += cell(c, c.header);
  std::printf("%s\n", line.c_str());
  for (auto row : rows) {
    simdjson::ondemand::object o;
    if (row.get_object().get(o) != simdjson::SUCCESS) continue;
    line.clear();
    for (const Column& c : columns) {
      std::string text = Field(o, c.field);
      if (c.also != nullptr) absl::StrAppend(&text, " (", Field(o, c.also), ")");
      line += cell(c, text);
    }
    std::printf("%s\n", line.c_str());
  }
}

int PolicyReload(const std::string& address) {
  Reply r = Call(address, "POST", "/policy/reload");
  if (r.status == 0) {
    std::fprintf(stderr, "uopctl: %s\n", r.error.c_str());
    return 2;
  }
  JsonAnswer answer;
  if (!answer.Parse(r.body)) {
    std::fprintf(stderr, "uopctl: unexpected answer (%d): %s\n", r.status, r.body.c_str());
    return 2;
  }
  simdjson::ondemand::object obj = answer.obj;
  const std::string ok = Field(obj, "ok"), changed = Field(obj, "changed");
  const std::string version = Field(obj, "version"), error = Field(obj, "error");
  if (ok != "true") {
    std::printf("refused: %s\nin force: %s (unchanged)\n", error.c_str(), version.c_str());
    return 1;
  }
  std::printf("%s: %s\n", changed == "true" ? "loaded" : "unchanged", version.c_str());
  PrintWarnings(obj);
  return 0;
}

int PolicyStatus(const std::string& address) {
  Reply r = Call(address, "GET", "/policy/status");
  if (r.status != 200) {
    std::fprintf(stderr, "uopctl: %s\n", r.status == 0 ? r.error.c_str() : r.body.c_str());
    return 2;
  }
  JsonAnswer answer;
  if (!answer.Parse(r.body)) {
    std::fprintf(stderr, "uopctl: unexpected answer: %s\n", r.body.c_str());
    return 2;
  }
  simdjson::ondemand::object obj = answer.obj;
  std::printf("policy directory: %s\n", Field(obj, "dir").c_str());
  std::printf("in force: %s, loaded %s (%s)\n", Field(obj, "version").c_str(),
              Field(obj, "loaded_at").c_str(), Field(obj, "loaded_by").c_str());
  const bool last_ok = Field(obj, "last_attempt_ok") == "true";
  std::printf("last attempt: %s (%s): %s\n", Field(obj, "last_attempt_at").c_str(),
              Field(obj, "last_attempt_by").c_str(),
              last_ok ? "ok" : ("refused: " + Field(obj, "last_error")).c_str());
  PrintWarnings(obj);
  PrintTable(obj, "shares", "",
             {{"DATASET", "dataset", 32},
              {"PEER", "peer", 16},
              {"STATE", "state", 14},
              {"DEFINED IN", "file"}});
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
  JsonAnswer answer;
  if (!answer.Parse(datasets.body)) {
    std::fprintf(stderr, "uopctl: unexpected answer: %s\n", datasets.body.c_str());
    return 1;
  }
  simdjson::ondemand::object obj = answer.obj;
  std::string readiness = ready.body;
  while (!readiness.empty() && readiness.back() == '\n') readiness.pop_back();
  std::printf("node %s: %s\npolicy %s\n", Field(obj, "node").c_str(), readiness.c_str(),
              Field(obj, "policy_version").c_str());
  PrintTable(obj, "shares", "\nshares (what leaves):\n",
             {{"DATASET", "dataset", 28},
              {"PEER", "peer", 12},
              {"STATE", "state", 13},
              {"PURPOSE", "purpose", 24},
              {"LICENCE", "licence", 12},
              {"VALID UNTIL", "valid_until", 20},
              {"RETENTION MS", "retention_ms"}});
  PrintTable(obj, "imports", "\nimports (what arrives):\n",
             {{"DATASET", "dataset", 28},
              {"FROM", "peer", 12},
              {"STATE", "state", 18},
              {"PURPOSE", "purpose", 24},
              {"LICENCE", "licence", 12},
              {"VALID UNTIL", "valid_until", 20},
              {"RETENTION MS (APPLIED)", "owner_retention_ms", 0, "retention_ms_applied"}});
  return ready.status == 200 ? 0 : 1;
}

}  // namespace uop::tools
