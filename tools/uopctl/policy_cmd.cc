// uopctl policy lint | explain | diff | test: what a city admin runs before a policy goes live.
#include "tools/uopctl/policy_cmd.h"

#include <simdjson.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include <CLI/CLI.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "broker/config.h"
#include "policy/policy_snapshot.h"
#include "policy/record_evaluator.h"
#include "policy/share_transform.h"
#include "tools/uopctl/kafka_topic_reader.h"
#include "yaml-cpp/yaml.h"

namespace uop::tools {
namespace {

namespace fs = std::filesystem;
using policy::PolicySnapshot;

std::string Str(absl::string_view s) { return std::string(s); }

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot read"));
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The peers rules may name: from --peers, from the node config, or (neither given) every peer
// the files mention, so that lint still checks everything else.
struct PeerSource {
  std::string peers_csv;
  std::string config;
};

absl::StatusOr<std::set<std::string>> KnownPeers(const PeerSource& src, const std::string& dir,
                                                 bool* guessed) {
  *guessed = false;
  std::set<std::string> peers;
  if (!src.peers_csv.empty()) {
    for (absl::string_view p : absl::StrSplit(src.peers_csv, ',', absl::SkipEmpty())) {
      peers.insert(std::string(p));
    }
    return peers;
  }
  if (!src.config.empty()) {
    auto cfg = broker::LoadNodeConfig(src.config);
    if (!cfg.ok()) return cfg.status();
    for (const auto& p : cfg->peers) peers.insert(p.name);
    return peers;
  }
  *guessed = true;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string ext = e.path().extension().string();
    if (!e.is_regular_file() || (ext != ".yaml" && ext != ".yml")) continue;
    try {
      YAML::Node root = YAML::LoadFile(e.path().string());
      for (const char* list : {"shares", "accept"}) {
        if (!root.IsMap() || !root[list].IsSequence()) continue;
        for (const auto& entry : root[list]) {
          if (entry.IsMap() && entry["peer"].IsScalar()) peers.insert(entry["peer"].Scalar());
        }
      }
    } catch (const YAML::Exception&) {
      // The loader reports the syntax error with its position.
    }
  }
  return peers;
}

absl::StatusOr<std::shared_ptr<const PolicySnapshot>> Load(const std::string& dir,
                                                           const PeerSource& peers,
                                                           const std::string& keys_dir,
                                                           bool quiet_guess = false) {
  bool guessed = false;
  auto known = KnownPeers(peers, dir, &guessed);
  if (!known.ok()) return known.status();
  if (guessed && !quiet_guess) {
    std::fprintf(stderr,
                 "note: peer names are not checked against a node (give --peers or --config)\n");
  }
  return PolicySnapshot::LoadDirectory(dir, *known, PolicySnapshot::LoadOptions{keys_dir});
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", Str(s.message()).c_str());
  return s.code() == absl::StatusCode::kInvalidArgument ? 1 : 2;
}

int Lint(const std::string& dir, const PeerSource& peers, const std::string& keys_dir,
         bool strict) {
  auto s = Load(dir, peers, keys_dir);
  if (!s.ok()) return Fail(s.status());
  for (const policy::Warning& w : (*s)->warnings()) std::printf("%s\n", w.ToString().c_str());
  std::printf("%s: ok: %zu shares, %zu accept rules, %zu warnings, version %s\n", dir.c_str(),
              (*s)->Shares().size(), (*s)->AcceptRules().size(), (*s)->warnings().size(),
              (*s)->version().c_str());
  return strict && !(*s)->warnings().empty() ? 1 : 0;
}

absl::StatusOr<absl::Time> ParseAt(const std::string& text) {
  if (text.empty()) return absl::Now();
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, text, &t, &err)) {
    return absl::InvalidArgumentError(absl::StrCat("--at ", text, ": ", err));
  }
  return t;
}

int Explain(const std::string& dir, const PeerSource& peers, const std::string& keys_dir,
            const std::string& dataset, const std::string& peer, const std::string& record_file,
            const std::string& key, const std::string& at_text) {
  auto s = Load(dir, peers, keys_dir, /*quiet_guess=*/true);
  if (!s.ok()) return Fail(s.status());
  auto at = ParseAt(at_text);
  if (!at.ok()) return Fail(at.status());
  auto record = ReadFile(record_file);
  if (!record.ok()) return Fail(record.status());
  std::printf("policy %s, dataset %s, peer %s, at %s\n", (*s)->version().c_str(), dataset.c_str(),
              peer.c_str(), absl::FormatTime(absl::RFC3339_sec, *at, absl::UTCTimeZone()).c_str());
  const policy::Share* share = (*s)->FindShare(dataset, peer);
  if (share == nullptr) {
    std::printf("  deny by default: no share of '%s' for '%s'\nresult: withheld (no_share)\n",
                dataset.c_str(), peer.c_str());
    return 0;
  }
  std::printf("  share defined at %s:%d (format %s)\n", share->file.c_str(), share->line,
              policy::FormatName(share->format));
  const policy::ShareState state = (*s)->StateAt(dataset, peer, *at);
  if (state != policy::ShareState::kActive) {
    std::printf("  valid: %s\nresult: withheld (not_valid)\n", policy::ShareStateName(state));
    return 0;
  }
  if (share->identity()) std::printf("  no record rules: the record leaves byte for byte\n");
  policy::RecordEvaluator evaluator(share);
  std::vector<std::string> trace;
  std::string out_key, out_value;
  policy::AggregateInput aggregate;
  const policy::WithheldReason reason =
      evaluator.Evaluate(key, *record, absl::ToUnixMillis(*at), *at, &out_key, &out_value,
                         share->aggregate ? &aggregate : nullptr, &trace);
  for (const std::string& line : trace) std::printf("  %s\n", line.c_str());
  if (reason != policy::WithheldReason::kNone) {
    std::printf("result: withheld (%s)\n", Str(policy::WithheldReasonName(reason)).c_str());
    return 0;
  }
  if (share->aggregate) {
    const int64_t w = absl::ToInt64Milliseconds(share->aggregate->window);
    int64_t start = aggregate.event_time_ms / w * w;
    if (start > aggregate.event_time_ms) start -= w;
    std::printf(
        "result: aggregated into the window [%s, %s) of key %s (value %g); only the aggregate "
        "leaves, if the window has at least %lld records\n",
        policy::FormatTime(start).c_str(), policy::FormatTime(start + w).c_str(),
        aggregate.group.empty() ? "(none)" : aggregate.group.c_str(), aggregate.value,
        static_cast<long long>(share->aggregate->min_count));
    return 0;
  }
  std::printf("result: kept\nkey: %s\nvalue: %s\n", out_key.c_str(), out_value.c_str());
  return 0;
}

// Splits a canonical text into blocks by their first line ("share D -> P").
std::map<std::string, std::vector<std::string>> Blocks(const std::string& canonical) {
  std::map<std::string, std::vector<std::string>> blocks;
  std::vector<std::string>* current = nullptr;
  for (absl::string_view line : absl::StrSplit(canonical, '\n', absl::SkipEmpty())) {
    if (!absl::StartsWith(line, " ")) {
      current = &blocks[std::string(line)];
    } else if (current != nullptr) {
      current->push_back(std::string(line));
    }
  }
  return blocks;
}

int Diff(const std::string& old_dir, const std::string& new_dir, const PeerSource& peers,
         const std::string& keys_dir) {
  auto a = Load(old_dir, peers, keys_dir, true);
  if (!a.ok()) return Fail(a.status());
  auto b = Load(new_dir, peers, keys_dir, true);
  if (!b.ok()) return Fail(b.status());
  std::printf("version %s -> %s\n", (*a)->version().c_str(), (*b)->version().c_str());
  const auto old_blocks = Blocks((*a)->canonical());
  const auto new_blocks = Blocks((*b)->canonical());
  std::set<std::string> names;
  for (const auto& [n, _] : old_blocks) names.insert(n);
  for (const auto& [n, _] : new_blocks) names.insert(n);
  int changes = 0;
  for (const std::string& name : names) {
    auto o = old_blocks.find(name);
    auto n = new_blocks.find(name);
    if (o == old_blocks.end()) {
      std::printf("+ %s\n", name.c_str());
      for (const auto& l : n->second) std::printf("+ %s\n", l.c_str());
      ++changes;
    } else if (n == new_blocks.end()) {
      std::printf("- %s\n", name.c_str());
      for (const auto& l : o->second) std::printf("- %s\n", l.c_str());
      ++changes;
    } else if (o->second != n->second) {
      std::printf("~ %s\n", name.c_str());
      std::set<std::string> ol(o->second.begin(), o->second.end());
      std::set<std::string> nl(n->second.begin(), n->second.end());
      for (const auto& l : o->second) {
        if (!nl.contains(l)) std::printf("- %s\n", l.c_str());
      }
      for (const auto& l : n->second) {
        if (!ol.contains(l)) std::printf("+ %s\n", l.c_str());
      }
      ++changes;
    }
  }
  if (changes == 0) std::printf("no change\n");
  return changes == 0 ? 0 : 1;
}

// JSON text without insignificant whitespace (numbers and strings as written).
absl::StatusOr<std::string> Minified(const std::string& json) {
  std::string out(json.size(), '\0');
  size_t len = 0;
  if (simdjson::minify(json.data(), json.size(), out.data(), len) != simdjson::SUCCESS) {
    return absl::InvalidArgumentError("not JSON");
  }
  out.resize(len);
  simdjson::dom::parser parser;
  simdjson::dom::element e;
  if (parser.parse(out).get(e) != simdjson::SUCCESS) return absl::InvalidArgumentError("not JSON");
  return out;
}

struct CaseResult {
  bool ok = false;
  std::string detail;
};

CaseResult RunCase(const std::shared_ptr<const PolicySnapshot>& snapshot, const YAML::Node& c) {
  auto text = [&](const char* k) {
    return c[k].IsDefined() && c[k].IsScalar() ? c[k].Scalar() : std::string();
  };
  const std::string dataset = text("dataset"), peer = text("peer");
  auto at = ParseAt(text("at").empty() ? "2026-01-01T00:00:00Z" : text("at"));
  if (!at.ok()) return {false, Str(at.status().message())};
  std::vector<std::string> records;
  if (c["record"].IsDefined() && c["record"].IsScalar()) records.push_back(c["record"].Scalar());
  if (c["records"].IsDefined() && c["records"].IsSequence()) {
    for (const auto& r : c["records"]) records.push_back(r.Scalar());
  }
  if (records.empty()) return {false, "no 'record' or 'records'"};
  auto t = policy::ShareTransform::Resume(snapshot, dataset, peer, 0, "");
  if (!t.ok()) {
    const std::string want = text("withheld");
    if (want == "no_share") return {true, ""};
    return {false, Str(t.status().message())};
  }
  policy::TransformOutput out;
  policy::Decision last;
  const std::string key = text("key");  // outlives the records that view it
  for (size_t i = 0; i < records.size(); ++i) {
    policy::SourceRecord rec{0, static_cast<int64_t>(i), absl::ToUnixMillis(*at), key, records[i],
                             {}};
    last = (*t)->Apply(rec, *at, &out);
  }
  if (c["caught_up_at"].IsDefined()) {
    auto up = ParseAt(text("caught_up_at"));
    if (!up.ok()) return {false, Str(up.status().message())};
    (*t)->Advance(*up, &out);
  }
  if (c["withheld"].IsDefined()) {
    const std::string got = last.verdict == policy::Decision::Verdict::kWithheld
                                ? Str(policy::WithheldReasonName(last.reason))
                                : "not withheld";
    if (got == text("withheld") && out.records.empty()) return {true, ""};
    return {false, absl::StrCat("expected withheld (", text("withheld"), "), got ", got,
                                out.records.empty() ? "" : " with output")};
  }
  std::vector<std::string> want;
  if (c["expect"].IsDefined() && c["expect"].IsScalar()) want.push_back(c["expect"].Scalar());
  if (c["expect"].IsDefined() && c["expect"].IsSequence()) {
    for (const auto& e : c["expect"]) want.push_back(e.Scalar());
  }
  if (want.size() != out.records.size()) {
    std::string got;
    for (const auto& o : out.records) absl::StrAppend(&got, "\n      ", o.value);
    return {false, absl::StrCat(
                       "expected ", want.size(), " records out, got ", out.records.size(), got,
                       last.verdict == policy::Decision::Verdict::kWithheld
                           ? absl::StrCat(
                                 " (withheld: ", Str(policy::WithheldReasonName(last.reason)), ")")
                           : "")};
  }
  for (size_t i = 0; i < want.size(); ++i) {
    auto expected = Minified(want[i]);
    if (!expected.ok()) return {false, absl::StrCat("expect[", i, "] is not JSON")};
    if (*expected != out.records[i].value) {
      return {false, absl::StrCat("record ", i, ":\n      expected ", *expected,
                                  "\n      got      ", out.records[i].value)};
    }
    if ((c["expect_key"].IsDefined() && c["expect_key"].IsScalar()) &&
        c["expect_key"].Scalar() != out.records[i].key) {
      return {false, absl::StrCat("record ", i, ": expected key ", c["expect_key"].Scalar(),
                                  ", got ", out.records[i].key)};
    }
  }
  return {true, ""};
}

int Test(const std::string& dir, const PeerSource& peers, const std::string& keys_dir) {
  auto s = Load(dir, peers, keys_dir, true);
  if (!s.ok()) return Fail(s.status());
  const fs::path cases = fs::path(dir) / "cases";
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(cases, ec)) {
    const std::string ext = e.path().extension().string();
    if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml")) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "error: no cases in %s (*.yaml)\n", cases.string().c_str());
    return 2;
  }
  int passed = 0, failed = 0;
  for (const fs::path& f : files) {
    YAML::Node root;
    try {
      root = YAML::LoadFile(f.string());
    } catch (const YAML::Exception& e) {
      std::fprintf(stderr, "error: %s:%d:%d: %s\n", f.string().c_str(), e.mark.line + 1,
                   e.mark.column + 1, e.msg.c_str());
      return 2;
    }
    if (!root.IsSequence()) {
      std::fprintf(stderr, "error: %s: expected a list of cases\n", f.string().c_str());
      return 2;
    }
    for (const auto& c : root) {
      const std::string name =
          c["name"].IsDefined() && c["name"].IsScalar() ? c["name"].Scalar() : "(unnamed)";
      CaseResult r = RunCase(*s, c);
      std::printf("%s %s:%d: %s%s%s\n", r.ok ? "PASS" : "FAIL", f.filename().string().c_str(),
                  c.Mark().line + 1, name.c_str(), r.ok ? "" : "\n    ", r.detail.c_str());
      (r.ok ? passed : failed)++;
    }
  }
  std::printf("%d passed, %d failed (policy %s)\n", passed, failed, (*s)->version().c_str());
  return failed == 0 ? 0 : 1;
}

// The last `last` records of the topic (the newest by timestamp, read from the end of every
// partition) as `peer` would receive them under the rules of `dir`, with counts by reason.
int Preview(const std::string& dir, const PeerSource& peers, const std::string& keys_dir,
            const std::string& dataset, const std::string& peer, std::string bootstrap,
            const std::string& node_config, int64_t last) {
  auto s = Load(dir, peers, keys_dir, /*quiet_guess=*/true);
  if (!s.ok()) return Fail(s.status());
  if (bootstrap.empty() && !node_config.empty()) {
    auto cfg = broker::LoadNodeConfig(node_config);
    if (!cfg.ok()) return Fail(cfg.status());
    bootstrap = cfg->kafka.bootstrap;
    if (bootstrap.empty()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat(node_config,
                       ": the node's Kafka is embedded (in its own process): give "
                       "--bootstrap with the kafka_bootstrap of its --ready-file")));
    }
  }
  if (bootstrap.empty()) {
    return Fail(absl::InvalidArgumentError("give --bootstrap HOST:PORT or --config node.yaml"));
  }
  if (last <= 0) return Fail(absl::InvalidArgumentError("--last must be at least 1"));
  const policy::Share* share = (*s)->FindShare(dataset, peer);
  if (share == nullptr) {
    std::printf("deny by default: no share of '%s' for '%s' in %s: nothing would leave\n",
                dataset.c_str(), peer.c_str(), dir.c_str());
    return 0;
  }
  auto partitions = TopicPartitions(bootstrap, dataset);
  if (!partitions.ok()) return Fail(partitions.status());
  auto read = ReadWholeTopic(bootstrap, dataset, *partitions, last);
  if (!read.ok()) return Fail(read.status());
  // The newest `last` over all partitions, then in offset order per partition.
  std::vector<const ReadRecord*> all;
  for (const auto& [p, records] : *read) {
    for (const ReadRecord& r : records) all.push_back(&r);
  }
  std::stable_sort(all.begin(), all.end(), [](const ReadRecord* a, const ReadRecord* b) {
    return a->timestamp_ms < b->timestamp_ms;
  });
  if (static_cast<int64_t>(all.size()) > last) all.erase(all.begin(), all.end() - last);
  std::stable_sort(all.begin(), all.end(), [](const ReadRecord* a, const ReadRecord* b) {
    return a->partition != b->partition ? a->partition < b->partition : a->offset < b->offset;
  });
  const absl::Time now = absl::Now();
  std::printf(
      "policy %s (%s, not loaded by any node), dataset %s, peer %s: the last %zu records of %s\n",
      (*s)->version().c_str(), dir.c_str(), dataset.c_str(), peer.c_str(), all.size(),
      bootstrap.c_str());
  std::map<int32_t, std::unique_ptr<policy::ShareTransform>> transforms;
  std::map<std::string, int64_t> withheld;
  int64_t kept = 0, aggregated = 0, emitted = 0;
  policy::TransformOutput out;
  auto print_out = [&](const char* prefix) {
    for (const policy::OutputRecord& o : out.records) {
      ++emitted;
      std::printf("%s key=%s value=%s\n", prefix, o.key.c_str(), o.value.c_str());
    }
    if (out.below_min_count_records > 0) withheld["below_min_count"] += out.below_min_count_records;
    out.Clear();
  };
  for (const ReadRecord* r : all) {
    auto it = transforms.find(r->partition);
    if (it == transforms.end()) {
      auto t = policy::ShareTransform::Resume(*s, dataset, peer, r->partition,
                                              policy::EncodeOffsetToken(r->offset));
      if (!t.ok()) return Fail(t.status());
      it = transforms.emplace(r->partition, *std::move(t)).first;
    }
    policy::SourceRecord in;
    in.partition = r->partition;
    in.offset = r->offset;
    in.timestamp_ms = r->timestamp_ms;
    if (r->key.has_value()) in.key = *r->key;
    if (r->value.has_value()) in.value = *r->value;
    for (const auto& [k, v] : r->headers) {
      in.headers.emplace_back(k, v.has_value() ? std::string_view(*v) : std::string_view());
    }
    const policy::Decision d = it->second->Apply(in, now, &out);
    const std::string where = absl::StrCat("p", r->partition, "@", r->offset);
    switch (d.verdict) {
      case policy::Decision::Verdict::kKept:
        ++kept;
        print_out((where + " kept").c_str());
        break;
      case policy::Decision::Verdict::kAggregated:
        ++aggregated;
        print_out((where + " closes a window:").c_str());
        break;
      case policy::Decision::Verdict::kWithheld:
        ++withheld[policy::WithheldReasonName(d.reason)];
        std::printf("%s withheld (%s)\n", where.c_str(), policy::WithheldReasonName(d.reason));
        print_out((where + " closes a window:").c_str());
        break;
    }
  }
  for (auto& [p, t] : transforms) {
    t->Advance(now, &out);  // windows that are closed by now
    print_out(absl::StrCat("p", p, " window closed by now:").c_str());
  }
  int64_t withheld_total = 0;
  std::string reasons;
  for (const auto& [reason, n] : withheld) {
    withheld_total += n;
    absl::StrAppend(&reasons, reasons.empty() ? "" : ", ", reason, " ", n);
  }
  std::printf(
      "summary: %zu read, %lld kept, %lld withheld%s%s%s, %lld into aggregation windows, %lld "
      "records would leave\n",
      all.size(), static_cast<long long>(kept), static_cast<long long>(withheld_total),
      reasons.empty() ? "" : " (", reasons.c_str(), reasons.empty() ? "" : ")",
      static_cast<long long>(aggregated), static_cast<long long>(emitted));
  return 0;
}

}  // namespace

int PolicyMain(int argc, char** argv) {
  CLI::App app{"Lint, explain, diff and test governance policies offline", "uopctl policy"};
  app.require_subcommand(1);
  PeerSource peers;
  std::string keys_dir;
  auto common = [&](CLI::App* cmd) {
    cmd->add_option("--peers", peers.peers_csv, "Known peer names, comma-separated");
    cmd->add_option("--config", peers.config, "Take the peers from this node config");
    cmd->add_option("--keys", keys_dir, "Pseudonymisation key directory (default DIR/keys)");
  };
  std::string dir, old_dir, dataset, peer, record, key, at;
  bool strict = false;
  auto* lint = app.add_subcommand("lint", "Validate a policy directory (exit 1 on errors)");
  lint->add_option("DIR", dir)->required();
  lint->add_flag("--strict", strict, "Warnings fail too");
  common(lint);
  auto* explain = app.add_subcommand("explain", "What a record becomes for a peer, rule by rule");
  explain->add_option("RECORD", record, "A file with the record's value")->required();
  explain->add_option("--dataset", dataset)->required();
  explain->add_option("--peer", peer)->required();
  explain->add_option("--dir", dir, "Policy directory")->required();
  explain->add_option("--key", key, "The record's Kafka key");
  explain->add_option("--at", at, "Evaluate at this RFC 3339 time (default: now)");
  common(explain);
  auto* diff = app.add_subcommand("diff", "What changes between two policy directories");
  diff->add_option("OLD", old_dir)->required();
  diff->add_option("NEW", dir)->required();
  common(diff);
  std::string bootstrap, node_config;
  int64_t last = 100;
  auto* preview = app.add_subcommand(
      "preview", "Dry run on real traffic: the last N records of a topic as a peer would get them");
  preview->add_option("--dir", dir, "Policy directory (need not be loaded anywhere)")->required();
  preview->add_option("--dataset", dataset)->required();
  preview->add_option("--peer", peer)->required();
  preview->add_option("--last", last, "How many of the newest records (default 100)");
  preview->add_option("--bootstrap", bootstrap, "The owner's Kafka");
  preview->add_option("--node-config", node_config, "Take the Kafka from this node config");
  preview->add_option("--peers", peers.peers_csv, "Known peer names, comma-separated");
  preview->add_option("--keys", keys_dir, "Pseudonymisation key directory (default DIR/keys)");
  auto* test = app.add_subcommand("test", "Run the example cases in DIR/cases/*.yaml");
  test->add_option("DIR", dir)->required();
  common(test);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (*lint) return Lint(dir, peers, keys_dir, strict);
  if (*explain) return Explain(dir, peers, keys_dir, dataset, peer, record, key, at);
  if (*diff) return Diff(old_dir, dir, peers, keys_dir);
  if (*test) return Test(dir, peers, keys_dir);
  if (*preview) {
    if (peers.config.empty()) peers.config = node_config;
    return Preview(dir, peers, keys_dir, dataset, peer, bootstrap, node_config, last);
  }
  return 2;
}

}  // namespace uop::tools
