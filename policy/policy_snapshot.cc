// Loading and validating governance rules; versioning by a hash of their canonical form.
#include "policy/policy_snapshot.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "policy/decision.h"
#include "policy/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace uop::policy {
namespace {

std::string Sha256Hex(absl::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), len));
}

std::string NumberText(double v) {
  char buf[40];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, res.ptr);
}

std::string FormatRfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E*SZ", t, absl::UTCTimeZone());
}

}  // namespace

const char* FormatName(Format format) {
  switch (format) {
    case Format::kBytes:
      return "bytes";
    case Format::kJson:
      return "json";
    case Format::kSensorThingsObservation:
      return "sensorthings-observation";
  }
  return "?";
}

const char* AggregateFunctionName(AggregateFunction f) {
  switch (f) {
    case AggregateFunction::kCount:
      return "count";
    case AggregateFunction::kSum:
      return "sum";
    case AggregateFunction::kMean:
      return "mean";
    case AggregateFunction::kMin:
      return "min";
    case AggregateFunction::kMax:
      return "max";
  }
  return "?";
}

const char* WithheldReasonName(WithheldReason reason) {
  switch (reason) {
    case WithheldReason::kNone:
      return "none";
    case WithheldReason::kNoShare:
      return "no_share";
    case WithheldReason::kNotValid:
      return "not_valid";
    case WithheldReason::kNotJson:
      return "not_json";
    case WithheldReason::kNotObservation:
      return "not_observation";
    case WithheldReason::kNoLocation:
      return "no_location";
    case WithheldReason::kBadLocation:
      return "bad_location";
    case WithheldReason::kOutsideArea:
      return "outside_area";
    case WithheldReason::kPastRetention:
      return "past_retention";
    case WithheldReason::kNoAggregateValue:
      return "no_aggregate_value";
    case WithheldReason::kLate:
      return "late";
    case WithheldReason::kBelowMinCount:
      return "below_min_count";
  }
  return "unknown";
}

const char* ShareStateName(ShareState state) {
  switch (state) {
    case ShareState::kNoShare:
      return "no_share";
    case ShareState::kNotYetValid:
      return "not_yet_valid";
    case ShareState::kActive:
      return "active";
    case ShareState::kExpired:
      return "expired";
  }
  return "?";
}

SecretKey::SecretKey(std::string name, std::string bytes)
    : name_(std::move(name)), bytes_(std::move(bytes)) {
  fingerprint_ = "sha256:" + Sha256Hex(bytes_).substr(0, 16);
}

SecretKey::~SecretKey() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }

std::string Warning::ToString() const {
  if (line == 0) return absl::StrCat(file, ": key '", key, "': warning: ", message);
  return absl::StrCat(file, ":", line, ":", column, ": key '", key, "': warning: ", message);
}

bool IsValidTopicName(absl::string_view topic) {
  if (topic.empty() || topic.size() > 249 || topic == "." || topic == "..") return false;
  for (char c : topic) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

std::optional<absl::Duration> ParsePolicyDuration(absl::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  int64_t n = 0;
  if (digits == 0 || digits > 12 || !absl::SimpleAtoi(text.substr(0, digits), &n) || n <= 0) {
    return std::nullopt;
  }
  const absl::string_view unit = text.substr(digits);
  if (unit == "ms") return absl::Milliseconds(n);
  if (unit == "s") return absl::Seconds(n);
  if (unit == "m") return absl::Minutes(n);
  if (unit == "h") return absl::Hours(n);
  if (unit == "d") return absl::Hours(24 * n);
  if (unit == "w") return absl::Hours(24 * 7 * n);
  return std::nullopt;
}

// Turns YAML files into a PolicySnapshot: one pass per file, every error with its position.
class Loader {
 public:
  Loader(const std::map<std::string, std::string>& files, const std::set<std::string>& peers,
         PolicySnapshot* out)
      : files_(files), peers_(peers), out_(out) {}

  absl::Status Run() {
    for (const auto& [file, text] : files_) {
      if (!IsRuleFile(file)) continue;
      file_ = file;
      YAML::Node root;
      try {
        root = YAML::Load(text);
      } catch (const YAML::ParserException& e) {
        return Error(e.mark, "(syntax)", e.msg);
      }
      if (root.IsNull()) continue;  // an empty file shares nothing
      if (!root.IsMap()) return Error(root.Mark(), "(top level)", "expected a mapping");
      if (root["accept"].IsDefined()) {
        RETURN_IF_ERROR(CheckKeys(root, "", {"accept"}));
        RETURN_IF_ERROR(LoadAccept(root["accept"]));
      } else {
        RETURN_IF_ERROR(LoadDataset(root));
      }
    }
    BuildCanonical();
    return absl::OkStatus();
  }

  static bool IsRuleFile(const std::string& name) {
    return name.ends_with(".yaml") || name.ends_with(".yml");
  }

 private:
  absl::Status Error(const YAML::Mark& mark, absl::string_view key, absl::string_view what) const {
    if (mark.is_null()) {
      return absl::InvalidArgumentError(absl::StrCat(file_, ": key '", key, "': ", what));
    }
    return absl::InvalidArgumentError(
        absl::StrCat(file_, ":", mark.line + 1, ":", mark.column + 1, ": key '", key, "': ", what));
  }

  void Warn(const YAML::Mark& mark, std::string key, std::string message) {
    Warning w{file_, 0, 0, std::move(key), std::move(message)};
    if (!mark.is_null()) {
      w.line = mark.line + 1;
      w.column = mark.column + 1;
    }
    out_->warnings_.push_back(std::move(w));
  }

  static std::string Join(absl::string_view prefix, absl::string_view key) {
    return prefix.empty() ? std::string(key) : absl::StrCat(prefix, ".", key);
  }

  absl::Status CheckKeys(const YAML::Node& map, absl::string_view prefix,
                         std::initializer_list<absl::string_view> allowed) const {
    for (const auto& kv : map) {
      const std::string key = kv.first.Scalar();
      bool ok = false;
      for (absl::string_view a : allowed) ok = ok || a == key;
      if (!ok) {
        if (prefix.empty() && key == "share") {
          return Error(kv.first.Mark(), key,
                       "renamed to 'shares' (a list of {peer: NAME, ...rules}); see "
                       "docs/policy.md");
        }
        return Error(kv.first.Mark(), Join(prefix, key),
                     absl::StrCat("unknown key; expected one of: ", absl::StrJoin(allowed, ", ")));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<YAML::Node> Map(const YAML::Node& parent, absl::string_view key,
                                 absl::string_view where) const {
    YAML::Node n = parent[std::string(key)];
    if (!n.IsMap()) return Error(n.Mark(), where, "expected a mapping");
    return n;
  }

  absl::StatusOr<std::string> String(const YAML::Node& n, absl::string_view where) const {
    if (!n.IsScalar() || n.Scalar().empty()) {
      return Error(n.Mark(), where, "expected a non-empty string");
    }
    return n.Scalar();
  }

  absl::StatusOr<double> Number(const YAML::Node& n, absl::string_view where) const {
    double v = 0;
    if (!n.IsScalar() || !absl::SimpleAtod(n.Scalar(), &v) || !std::isfinite(v)) {
      return Error(n.Mark(), where, "expected a finite number");
    }
    return v;
  }

  absl::StatusOr<int64_t> Integer(const YAML::Node& n, absl::string_view where, int64_t min,
                                  int64_t max) const {
    int64_t v = 0;
    if (!n.IsScalar() || !absl::SimpleAtoi(n.Scalar(), &v) || v < min || v > max) {
      return Error(n.Mark(), where,
                   absl::StrCat("expected a whole number from ", min, " to ", max));
    }
    return v;
  }

  absl::StatusOr<absl::Duration> DurationOf(const YAML::Node& n, absl::string_view where) const {
    std::optional<absl::Duration> d;
    if (n.IsScalar()) d = ParsePolicyDuration(n.Scalar());
    if (!d.has_value()) {
      return Error(
          n.Mark(), where,
          "expected a duration: a positive whole number and ms, s, m, h, d or w (e.g. 30d)");
    }
    return *d;
  }

  absl::StatusOr<absl::Time> TimeOf(const YAML::Node& n, absl::string_view where) const {
    absl::Time t;
    std::string err;
    if (!n.IsScalar() || !absl::ParseTime(absl::RFC3339_full, n.Scalar(), &t, &err)) {
      return Error(n.Mark(), where, "expected an RFC 3339 time, e.g. 2026-01-01T00:00:00Z");
    }
    return t;
  }

  absl::StatusOr<Format> FormatOf(const YAML::Node& n, absl::string_view where) const {
    if (n.IsScalar()) {
      if (n.Scalar() == "bytes") return Format::kBytes;
      if (n.Scalar() == "json") return Format::kJson;
      if (n.Scalar() == "sensorthings-observation") return Format::kSensorThingsObservation;
    }
    return Error(n.Mark(), where, "expected one of: json, sensorthings-observation, bytes");
  }

  absl::StatusOr<std::string> Path(const YAML::Node& n, absl::string_view where) const {
    ASSIGN_OR_RETURN(std::string p, String(n, where));
    for (absl::string_view segment : absl::StrSplit(p, '.')) {
      if (segment.empty()) {
        return Error(n.Mark(), where, absl::StrCat("'", p, "' is not a path: an empty segment"));
      }
    }
    if (p.size() > 1000) return Error(n.Mark(), where, "path longer than 1000 characters");
    return p;
  }

  absl::StatusOr<std::vector<std::string>> Paths(const YAML::Node& n, absl::string_view where) {
    if (!n.IsSequence()) return Error(n.Mark(), where, "expected a list of JSON paths");
    std::vector<std::string> out;
    for (size_t i = 0; i < n.size(); ++i) {
      const std::string w = absl::StrCat(where, "[", i, "]");
      ASSIGN_OR_RETURN(std::string p, Path(n[i], w));
      for (const std::string& q : out) {
        if (q == p) Warn(n[i].Mark(), w, absl::StrCat("'", p, "' is listed twice"));
      }
      out.push_back(std::move(p));
    }
    if (out.size() > 200) return Error(n.Mark(), where, "more than 200 paths");
    return out;
  }

  // The name of a file a rule references, relative to the rule file's directory.
  std::string Sibling(absl::string_view name) const {
    std::filesystem::path dir = std::filesystem::path(file_).parent_path();
    return (dir / std::string(name)).lexically_normal().string();
  }

  absl::StatusOr<std::string> ReadReferenced(const std::string& path, const YAML::Mark& mark,
                                             absl::string_view where) const {
    auto it = files_.find(path);
    if (it == files_.end()) {
      return Error(mark, where, absl::StrCat("cannot read '", path, "'"));
    }
    return it->second;
  }

  absl::StatusOr<std::shared_ptr<const SecretKey>> Key(const YAML::Node& n,
                                                       absl::string_view where) {
    ASSIGN_OR_RETURN(std::string name, String(n, where));
    if (!IsValidTopicName(name)) {
      return Error(n.Mark(), where, "a key name uses only [A-Za-z0-9._-]");
    }
    if (auto it = keys_.find(name); it != keys_.end()) return it->second;
    const std::string path = absl::StrCat("keys/", name, ".key");
    auto it = files_.find(path);
    if (it == files_.end()) {
      return Error(n.Mark(), where,
                   absl::StrCat("pseudonymisation key '", name, "' not found (", path, ")"));
    }
    std::string bytes = it->second;
    while (!bytes.empty() && (bytes.back() == '\n' || bytes.back() == '\r')) bytes.pop_back();
    if (bytes.size() < 32) {
      OPENSSL_cleanse(bytes.data(), bytes.size());
      return Error(n.Mark(), where,
                   absl::StrCat("pseudonymisation key '", name,
                                "' is shorter than 32 bytes; make one with: openssl rand -hex 32"));
    }
    auto key = std::make_shared<const SecretKey>(name, std::move(bytes));
    keys_.emplace(name, key);
    return key;
  }

  absl::Status LoadDataset(const YAML::Node& root) {
    RETURN_IF_ERROR(CheckKeys(root, "", {"dataset", "format", "location", "owner", "shares"}));
    const YAML::Node dataset = root["dataset"];
    if (!dataset.IsDefined() || !dataset.IsScalar()) {
      return Error(dataset.IsDefined() ? dataset.Mark() : root.Mark(), "dataset",
                   "missing or not a topic name");
    }
    const std::string topic = dataset.Scalar();
    if (!IsValidTopicName(topic)) {
      return Error(dataset.Mark(), "dataset",
                   absl::StrCat("'", topic, "' is not a valid Kafka topic name"));
    }
    if (auto [it, inserted] = dataset_file_.emplace(topic, file_); !inserted) {
      return Error(dataset.Mark(), "dataset",
                   absl::StrCat("'", topic, "' is already defined in ", it->second));
    }
    out_->datasets_.insert(topic);
    Share base;
    base.dataset = topic;
    base.file = file_;
    if (root["format"].IsDefined()) {
      ASSIGN_OR_RETURN(base.format, FormatOf(root["format"], "format"));
    }
    if (root["location"].IsDefined()) {
      if (base.format == Format::kBytes) {
        return Error(root["location"].Mark(), "location",
                     "a 'bytes' dataset has no JSON location; set format: json or "
                     "sensorthings-observation");
      }
      ASSIGN_OR_RETURN(base.location, Path(root["location"], "location"));
    } else if (base.format == Format::kSensorThingsObservation) {
      base.location = "FeatureOfInterest.feature";
    }
    if (root["owner"].IsDefined()) {
      ASSIGN_OR_RETURN(YAML::Node owner, Map(root, "owner", "owner"));
      RETURN_IF_ERROR(CheckKeys(owner, "owner", {"organisation", "contact"}));
      if (owner["organisation"].IsDefined()) {
        ASSIGN_OR_RETURN(base.owner_organisation,
                         String(owner["organisation"], "owner.organisation"));
      }
      if (owner["contact"].IsDefined()) {
        ASSIGN_OR_RETURN(base.owner_contact, String(owner["contact"], "owner.contact"));
      }
    }
    const YAML::Node shares = root["shares"];
    if (!shares.IsDefined() || shares.IsNull()) return absl::OkStatus();  // shared with nobody
    if (!shares.IsSequence()) {
      return Error(shares.Mark(), "shares", "expected a list of {peer: NAME, ...rules}");
    }
    for (size_t i = 0; i < shares.size(); ++i) {
      RETURN_IF_ERROR(LoadShare(shares[i], absl::StrCat("shares[", i, "]"), base));
    }
    return absl::OkStatus();
  }

  absl::Status LoadShare(const YAML::Node& entry, const std::string& where, const Share& base) {
    if (!entry.IsMap()) return Error(entry.Mark(), where, "expected {peer: NAME, ...rules}");
    RETURN_IF_ERROR(CheckKeys(entry, where,
                              {"peer", "purpose", "licence", "valid", "retention", "fields",
                               "spatial", "aggregate", "rate"}));
    auto share = std::make_unique<Share>(base);
    share->line = entry.Mark().is_null() ? 0 : entry.Mark().line + 1;
    const YAML::Node peer = entry["peer"];
    if (!peer.IsDefined() || !peer.IsScalar()) {
      return Error(entry.Mark(), where + ".peer", "missing peer name");
    }
    if (!peers_.contains(peer.Scalar())) {
      return Error(peer.Mark(), where + ".peer",
                   absl::StrCat("unknown peer '", peer.Scalar(), "'; configured peers: ",
                                peers_.empty() ? "(none)" : absl::StrJoin(peers_, ", ")));
    }
    share->peer = peer.Scalar();
    if (out_->shares_.contains(std::make_pair(share->dataset, share->peer))) {
      return Error(peer.Mark(), where + ".peer",
                   absl::StrCat("peer '", share->peer, "' listed twice"));
    }
    if (entry["purpose"].IsDefined()) {
      ASSIGN_OR_RETURN(share->purpose, String(entry["purpose"], where + ".purpose"));
    }
    if (entry["licence"].IsDefined()) {
      ASSIGN_OR_RETURN(share->licence, String(entry["licence"], where + ".licence"));
    }
    if (entry["valid"].IsDefined()) {
      const std::string w = where + ".valid";
      ASSIGN_OR_RETURN(YAML::Node valid, Map(entry, "valid", w));
      RETURN_IF_ERROR(CheckKeys(valid, w, {"from", "until"}));
      if (valid["from"].IsDefined()) {
        ASSIGN_OR_RETURN(share->valid_from, TimeOf(valid["from"], w + ".from"));
      }
      if (valid["until"].IsDefined()) {
        ASSIGN_OR_RETURN(share->valid_until, TimeOf(valid["until"], w + ".until"));
      }
      if (share->valid_from && share->valid_until && *share->valid_from >= *share->valid_until) {
        return Error(valid["until"].Mark(), w + ".until", "is not after valid.from");
      }
    }
    if (entry["retention"].IsDefined()) {
      ASSIGN_OR_RETURN(share->retention, DurationOf(entry["retention"], where + ".retention"));
    }
    const bool json = share->format != Format::kBytes;
    for (const char* part : {"fields", "spatial", "aggregate"}) {
      if (entry[part].IsDefined() && !json) {
        return Error(entry[part].Mark(), Join(where, part),
                     absl::StrCat("'", part,
                                  "' rules need a JSON dataset; this dataset's format "
                                  "is 'bytes' (set format: json or sensorthings-observation)"));
      }
    }
    if (entry["fields"].IsDefined()) RETURN_IF_ERROR(LoadFields(entry, where, share.get()));
    if (entry["spatial"].IsDefined()) RETURN_IF_ERROR(LoadSpatial(entry, where, share.get()));
    if (entry["aggregate"].IsDefined()) RETURN_IF_ERROR(LoadAggregate(entry, where, share.get()));
    if (entry["rate"].IsDefined()) {
      const std::string w = where + ".rate";
      ASSIGN_OR_RETURN(YAML::Node rate, Map(entry, "rate", w));
      RETURN_IF_ERROR(CheckKeys(rate, w, {"records_per_s"}));
      if (!rate["records_per_s"].IsDefined()) {
        return Error(rate.Mark(), w + ".records_per_s", "missing");
      }
      ASSIGN_OR_RETURN(double r, Number(rate["records_per_s"], w + ".records_per_s"));
      if (r <= 0 || r > 1e9) {
        return Error(rate["records_per_s"].Mark(), w + ".records_per_s",
                     "expected more than 0 and at most 1e9");
      }
      share->records_per_s = r;
    }
    out_->shares_.emplace(std::make_pair(share->dataset, share->peer), std::move(share));
    return absl::OkStatus();
  }

  // True if `path` is kept by a keep list: equal to, below or above one of its paths.
  static bool UnderKeep(const std::vector<std::string>& keep, const std::string& path) {
    if (keep.empty()) return true;
    for (const std::string& k : keep) {
      if (path == k || path.starts_with(k + ".") || k.starts_with(path + ".")) return true;
    }
    return false;
  }

  absl::Status LoadFields(const YAML::Node& entry, const std::string& where, Share* share) {
    const std::string w = where + ".fields";
    ASSIGN_OR_RETURN(YAML::Node fields, Map(entry, "fields", w));
    RETURN_IF_ERROR(
        CheckKeys(fields, w, {"keep", "drop", "pseudonymise", "pseudonym_key", "record_key"}));
    FieldRules& f = share->fields;
    if (fields["keep"].IsDefined()) {
      ASSIGN_OR_RETURN(f.keep, Paths(fields["keep"], w + ".keep"));
      if (f.keep.empty()) {
        return Error(fields["keep"].Mark(), w + ".keep",
                     "an empty keep list would keep nothing; leave 'keep' out to keep every field");
      }
    }
    if (fields["drop"].IsDefined()) {
      ASSIGN_OR_RETURN(f.drop, Paths(fields["drop"], w + ".drop"));
    }
    if (fields["pseudonymise"].IsDefined()) {
      ASSIGN_OR_RETURN(f.pseudonymise, Paths(fields["pseudonymise"], w + ".pseudonymise"));
    }
    if (fields["record_key"].IsDefined()) {
      const YAML::Node rk = fields["record_key"];
      const std::string v = rk.IsScalar() ? rk.Scalar() : "";
      if (v == "keep") {
        f.record_key = RecordKeyRule::kKeep;
      } else if (v == "drop") {
        f.record_key = RecordKeyRule::kDrop;
      } else if (v == "pseudonymise") {
        f.record_key = RecordKeyRule::kPseudonymise;
      } else {
        return Error(rk.Mark(), w + ".record_key", "expected one of: keep, drop, pseudonymise");
      }
    }
    const bool needs_key = !f.pseudonymise.empty() || f.record_key == RecordKeyRule::kPseudonymise;
    if (fields["pseudonym_key"].IsDefined()) {
      ASSIGN_OR_RETURN(f.key, Key(fields["pseudonym_key"], w + ".pseudonym_key"));
      if (!needs_key) {
        Warn(fields["pseudonym_key"].Mark(), w + ".pseudonym_key",
             "no field or record key is pseudonymised: the key is unused");
      }
    } else if (needs_key) {
      return Error(fields.Mark(), w + ".pseudonym_key",
                   "missing: pseudonymisation needs a key name (the file keys/NAME.key)");
    }
    // Dead and contradictory rules.
    for (size_t i = 0; i < f.drop.size(); ++i) {
      const std::string& d = f.drop[i];
      const std::string k = absl::StrCat(w, ".drop[", i, "]");
      for (const std::string& keep : f.keep) {
        if (keep == d || keep.starts_with(d + ".")) {
          Warn(fields["drop"][i].Mark(), k,
               absl::StrCat("contradicts keep '", keep, "': the drop wins, '", keep,
                            "' does not leave"));
        }
      }
      if (!UnderKeep(f.keep, d)) {
        Warn(fields["drop"][i].Mark(), k, absl::StrCat("dead rule: '", d, "' is not kept anyway"));
      }
    }
    for (size_t i = 0; i < f.pseudonymise.size(); ++i) {
      const std::string& p = f.pseudonymise[i];
      const std::string k = absl::StrCat(w, ".pseudonymise[", i, "]");
      for (const std::string& d : f.drop) {
        if (p == d || p.starts_with(d + ".")) {
          Warn(fields["pseudonymise"][i].Mark(), k,
               absl::StrCat("contradicts drop '", d, "': the field is dropped"));
        }
      }
      if (!UnderKeep(f.keep, p)) {
        Warn(fields["pseudonymise"][i].Mark(), k, absl::StrCat("dead rule: '", p, "' is not kept"));
      }
    }
    if (!f.pseudonymise.empty() && !fields["record_key"].IsDefined()) {
      Warn(fields["pseudonymise"].Mark(), w + ".record_key",
           "fields are pseudonymised but the Kafka record key leaves as it is (often the same "
           "identifier): set record_key: pseudonymise, drop or keep");
    }
    return absl::OkStatus();
  }

  absl::Status LoadSpatial(const YAML::Node& entry, const std::string& where, Share* share) {
    const std::string w = where + ".spatial";
    ASSIGN_OR_RETURN(YAML::Node spatial, Map(entry, "spatial", w));
    RETURN_IF_ERROR(CheckKeys(spatial, w, {"within", "generalise", "no_location"}));
    if (share->location.empty()) {
      return Error(spatial.Mark(), w,
                   "spatial rules need the dataset's 'location' (the JSON path of its geometry)");
    }
    SpatialRules& s = share->spatial;
    s.active = true;
    if (spatial["within"].IsDefined()) {
      const std::string ww = w + ".within";
      ASSIGN_OR_RETURN(YAML::Node within, Map(spatial, "within", ww));
      RETURN_IF_ERROR(CheckKeys(within, ww, {"bbox", "polygon"}));
      if (within["bbox"].IsDefined() == within["polygon"].IsDefined()) {
        return Error(within.Mark(), ww, "expected exactly one of: bbox, polygon");
      }
      if (within["bbox"].IsDefined()) {
        const YAML::Node b = within["bbox"];
        if (!b.IsSequence() || b.size() != 4) {
          return Error(b.Mark(), ww + ".bbox", "expected [min_lon, min_lat, max_lon, max_lat]");
        }
        double v[4];
        for (size_t i = 0; i < 4; ++i) {
          ASSIGN_OR_RETURN(v[i], Number(b[i], absl::StrCat(ww, ".bbox[", i, "]")));
          const double limit = i % 2 == 0 ? 180 : 90;
          if (v[i] < -limit || v[i] > limit) {
            return Error(b[i].Mark(), absl::StrCat(ww, ".bbox[", i, "]"),
                         absl::StrCat(i % 2 == 0 ? "longitude" : "latitude", " out of range -",
                                      limit, "..", limit));
          }
        }
        if (v[0] > v[2] || v[1] > v[3]) {
          return Error(b.Mark(), ww + ".bbox",
                       "min is above max: expected [min_lon, min_lat, max_lon, max_lat]");
        }
        if (v[0] == v[2] || v[1] == v[3]) {
          Warn(b.Mark(), ww + ".bbox", "the box has no area: only points exactly on its line pass");
        }
        s.within = Area::Box(v[0], v[1], v[2], v[3]);
        s.within_source = absl::StrCat("bbox [", NumberText(v[0]), ", ", NumberText(v[1]), ", ",
                                       NumberText(v[2]), ", ", NumberText(v[3]), "]");
      } else {
        ASSIGN_OR_RETURN(std::string name, String(within["polygon"], ww + ".polygon"));
        const std::string path = Sibling(name);
        ASSIGN_OR_RETURN(std::string text,
                         ReadReferenced(path, within["polygon"].Mark(), ww + ".polygon"));
        auto area = Area::FromGeoJson(text);
        if (!area.ok()) {
          return Error(within["polygon"].Mark(), ww + ".polygon",
                       absl::StrCat(name, ": ", area.status().message()));
        }
        if ((*area)->HasNoArea()) {
          Warn(within["polygon"].Mark(), ww + ".polygon", "the polygon has no area");
        }
        s.within = *std::move(area);
        s.within_source = absl::StrCat("polygon ", name);
      }
    }
    if (spatial["generalise"].IsDefined()) {
      const std::string gw = w + ".generalise";
      ASSIGN_OR_RETURN(YAML::Node g, Map(spatial, "generalise", gw));
      RETURN_IF_ERROR(CheckKeys(g, gw, {"grid_m", "decimals"}));
      if (g["grid_m"].IsDefined() == g["decimals"].IsDefined()) {
        return Error(g.Mark(), gw, "expected exactly one of: grid_m, decimals");
      }
      if (g["grid_m"].IsDefined()) {
        ASSIGN_OR_RETURN(s.grid_m, Number(g["grid_m"], gw + ".grid_m"));
        if (s.grid_m < 1 || s.grid_m > 1e6) {
          return Error(g["grid_m"].Mark(), gw + ".grid_m", "expected 1 to 1000000 metres");
        }
        s.generalise = SpatialRules::Generalise::kGrid;
      } else {
        ASSIGN_OR_RETURN(int64_t d, Integer(g["decimals"], gw + ".decimals", 0, 10));
        s.decimals = static_cast<int>(d);
        s.generalise = SpatialRules::Generalise::kDecimals;
      }
    }
    if (spatial["no_location"].IsDefined()) {
      const YAML::Node n = spatial["no_location"];
      if (n.IsScalar() && n.Scalar() == "deny") {
        s.deny_without_location = true;
      } else if (n.IsScalar() && n.Scalar() == "allow") {
        s.deny_without_location = false;
      } else {
        return Error(n.Mark(), w + ".no_location", "expected deny or allow");
      }
    }
    return absl::OkStatus();
  }

  absl::Status LoadAggregate(const YAML::Node& entry, const std::string& where, Share* share) {
    const std::string w = where + ".aggregate";
    ASSIGN_OR_RETURN(YAML::Node agg, Map(entry, "aggregate", w));
    RETURN_IF_ERROR(
        CheckKeys(agg, w, {"window", "lateness", "by", "of", "time", "values", "min_count"}));
    AggregateRules a;
    const bool sta = share->format == Format::kSensorThingsObservation;
    if (!agg["window"].IsDefined()) return Error(agg.Mark(), w + ".window", "missing");
    ASSIGN_OR_RETURN(a.window, DurationOf(agg["window"], w + ".window"));
    if (a.window < absl::Seconds(1) || a.window > absl::Hours(24 * 31)) {
      return Error(agg["window"].Mark(), w + ".window", "expected 1s to 31d");
    }
    a.lateness = absl::ZeroDuration();
    if (agg["lateness"].IsDefined()) {
      ASSIGN_OR_RETURN(a.lateness, DurationOf(agg["lateness"], w + ".lateness"));
      if (a.lateness > absl::Hours(24 * 31)) {
        return Error(agg["lateness"].Mark(), w + ".lateness", "expected at most 31d");
      }
    }
    if (agg["by"].IsDefined()) {
      ASSIGN_OR_RETURN(a.by, Path(agg["by"], w + ".by"));
    } else if (sta) {
      a.by = "Datastream.@iot.id";
    }
    if (agg["of"].IsDefined()) {
      ASSIGN_OR_RETURN(a.of, Path(agg["of"], w + ".of"));
    } else if (sta) {
      a.of = "result";
    } else {
      return Error(agg.Mark(), w + ".of", "missing: the JSON path of the numeric value");
    }
    if (agg["time"].IsDefined()) {
      ASSIGN_OR_RETURN(a.time, Path(agg["time"], w + ".time"));
    } else if (sta) {
      a.time = "phenomenonTime";
    }
    const YAML::Node values = agg["values"];
    if (!values.IsDefined() || !values.IsSequence() || values.size() == 0) {
      return Error(values.IsDefined() ? values.Mark() : agg.Mark(), w + ".values",
                   "expected a list of: mean, max, min, count, sum");
    }
    for (size_t i = 0; i < values.size(); ++i) {
      const std::string v = values[i].IsScalar() ? values[i].Scalar() : "";
      std::optional<AggregateFunction> f;
      for (AggregateFunction g :
           {AggregateFunction::kCount, AggregateFunction::kSum, AggregateFunction::kMean,
            AggregateFunction::kMin, AggregateFunction::kMax}) {
        if (v == AggregateFunctionName(g)) f = g;
      }
      const std::string vw = absl::StrCat(w, ".values[", i, "]");
      if (!f.has_value()) {
        return Error(values[i].Mark(), vw, "expected one of: mean, max, min, count, sum");
      }
      if (std::find(a.values.begin(), a.values.end(), *f) != a.values.end()) {
        return Error(values[i].Mark(), vw, absl::StrCat("'", v, "' listed twice"));
      }
      a.values.push_back(*f);
    }
    if (agg["min_count"].IsDefined()) {
      ASSIGN_OR_RETURN(a.min_count, Integer(agg["min_count"], w + ".min_count", 1, 1000000000));
    }
    // Field rules other than pseudonymising the key do not apply to an aggregate.
    if (!share->fields.keep.empty() || !share->fields.drop.empty()) {
      Warn(entry["fields"].Mark(), where + ".fields",
           "dead rule: only the aggregate leaves, keep and drop do not apply");
    }
    for (size_t i = 0; i < share->fields.pseudonymise.size(); ++i) {
      if (share->fields.pseudonymise[i] != a.by) {
        Warn(entry["fields"]["pseudonymise"][i].Mark(),
             absl::StrCat(where, ".fields.pseudonymise[", i, "]"),
             "dead rule: only the aggregate leaves; only aggregate.by can be pseudonymised");
      }
    }
    if (share->spatial.generalise != SpatialRules::Generalise::kNone) {
      Warn(entry["spatial"]["generalise"].Mark(), where + ".spatial.generalise",
           "dead rule: aggregates carry no location");
    }
    share->aggregate = std::move(a);
    return absl::OkStatus();
  }

  absl::Status LoadAccept(const YAML::Node& accept) {
    if (!accept.IsSequence()) {
      return Error(accept.Mark(), "accept", "expected a list of {peer: NAME, dataset: TOPIC}");
    }
    for (size_t i = 0; i < accept.size(); ++i) {
      const YAML::Node e = accept[i];
      const std::string w = absl::StrCat("accept[", i, "]");
      if (!e.IsMap()) return Error(e.Mark(), w, "expected {peer: NAME, dataset: TOPIC, ...}");
      RETURN_IF_ERROR(
          CheckKeys(e, w, {"peer", "dataset", "max_record_bytes", "format", "max_retention"}));
      auto rule = std::make_unique<AcceptRule>();
      rule->file = file_;
      rule->line = e.Mark().is_null() ? 0 : e.Mark().line + 1;
      if (!e["peer"].IsDefined()) return Error(e.Mark(), w + ".peer", "missing");
      ASSIGN_OR_RETURN(rule->peer, String(e["peer"], w + ".peer"));
      if (!peers_.contains(rule->peer)) {
        return Error(e["peer"].Mark(), w + ".peer",
                     absl::StrCat("unknown peer '", rule->peer, "'; configured peers: ",
                                  peers_.empty() ? "(none)" : absl::StrJoin(peers_, ", ")));
      }
      if (!e["dataset"].IsDefined()) return Error(e.Mark(), w + ".dataset", "missing");
      ASSIGN_OR_RETURN(rule->dataset, String(e["dataset"], w + ".dataset"));
      if (!IsValidTopicName(rule->dataset)) {
        return Error(e["dataset"].Mark(), w + ".dataset",
                     absl::StrCat("'", rule->dataset, "' is not a valid Kafka topic name"));
      }
      if (e["max_record_bytes"].IsDefined()) {
        ASSIGN_OR_RETURN(rule->max_record_bytes,
                         Integer(e["max_record_bytes"], w + ".max_record_bytes", 1, 1 << 30));
      }
      if (e["format"].IsDefined()) {
        ASSIGN_OR_RETURN(rule->format, FormatOf(e["format"], w + ".format"));
      }
      if (e["max_retention"].IsDefined()) {
        ASSIGN_OR_RETURN(rule->max_retention, DurationOf(e["max_retention"], w + ".max_retention"));
      }
      auto id = std::make_pair(rule->peer, rule->dataset);
      if (out_->accepts_.contains(id)) {
        return Error(e.Mark(), w,
                     absl::StrCat("peer '", rule->peer, "' and dataset '", rule->dataset,
                                  "' are already accepted by another rule"));
      }
      out_->accepts_.emplace(std::move(id), std::move(rule));
    }
    return absl::OkStatus();
  }

  // One block per rule, fields in a fixed order; the version is its hash.
  void BuildCanonical() {
    std::string c;
    for (const std::string& d : out_->datasets_) {
      bool any = false;
      for (const auto& [id, s] : out_->shares_) any = any || id.first == d;
      if (!any) absl::StrAppend(&c, "dataset ", d, " (not shared)\n");
    }
    auto list = [](const std::vector<std::string>& v) { return absl::StrJoin(v, ", "); };
    for (const auto& [id, s] : out_->shares_) {
      const size_t block_start = c.size();
      absl::StrAppend(&c, "share ", s->dataset, " -> ", s->peer, "\n");
      absl::StrAppend(&c, "  format: ", FormatName(s->format), "\n");
      if (!s->location.empty()) absl::StrAppend(&c, "  location: ", s->location, "\n");
      if (!s->owner_organisation.empty()) {
        absl::StrAppend(&c, "  owner.organisation: ", s->owner_organisation, "\n");
      }
      if (!s->owner_contact.empty())
        absl::StrAppend(&c, "  owner.contact: ", s->owner_contact, "\n");
      if (!s->purpose.empty()) absl::StrAppend(&c, "  purpose: ", s->purpose, "\n");
      if (!s->licence.empty()) absl::StrAppend(&c, "  licence: ", s->licence, "\n");
      if (s->valid_from) absl::StrAppend(&c, "  valid.from: ", FormatRfc3339(*s->valid_from), "\n");
      if (s->valid_until) {
        absl::StrAppend(&c, "  valid.until: ", FormatRfc3339(*s->valid_until), "\n");
      }
      if (s->retention) {
        absl::StrAppend(&c, "  retention: ", absl::FormatDuration(*s->retention), "\n");
      }
      const FieldRules& f = s->fields;
      if (!f.keep.empty()) absl::StrAppend(&c, "  fields.keep: ", list(f.keep), "\n");
      if (!f.drop.empty()) absl::StrAppend(&c, "  fields.drop: ", list(f.drop), "\n");
      if (!f.pseudonymise.empty()) {
        absl::StrAppend(&c, "  fields.pseudonymise: ", list(f.pseudonymise), "\n");
      }
      if (f.record_key != RecordKeyRule::kKeep) {
        absl::StrAppend(&c, "  fields.record_key: ",
                        f.record_key == RecordKeyRule::kDrop ? "drop" : "pseudonymise", "\n");
      }
      if (f.key != nullptr) {
        absl::StrAppend(&c, "  fields.pseudonym_key: ", f.key->name(), " (", f.key->fingerprint(),
                        ")\n");
      }
      const SpatialRules& sp = s->spatial;
      if (sp.within != nullptr) {
        absl::StrAppend(&c, "  spatial.within: ", sp.within_source, " ", sp.within->Canonical(),
                        "\n");
      }
      if (sp.generalise == SpatialRules::Generalise::kGrid) {
        absl::StrAppend(&c, "  spatial.generalise.grid_m: ", NumberText(sp.grid_m), "\n");
      } else if (sp.generalise == SpatialRules::Generalise::kDecimals) {
        absl::StrAppend(&c, "  spatial.generalise.decimals: ", sp.decimals, "\n");
      }
      if (!s->location.empty() && sp.active) {
        absl::StrAppend(&c, "  spatial.no_location: ", sp.deny_without_location ? "deny" : "allow",
                        "\n");
      }
      if (s->aggregate) {
        const AggregateRules& a = *s->aggregate;
        std::vector<std::string> values;
        for (AggregateFunction fn : a.values) values.push_back(AggregateFunctionName(fn));
        absl::StrAppend(&c, "  aggregate: window ", absl::FormatDuration(a.window), ", lateness ",
                        absl::FormatDuration(a.lateness), ", by ", a.by.empty() ? "-" : a.by,
                        ", of ", a.of, ", time ", a.time.empty() ? "(record timestamp)" : a.time,
                        ", values ", absl::StrJoin(values, ", "), ", min_count ", a.min_count,
                        "\n");
      }
      if (s->records_per_s) {
        absl::StrAppend(&c, "  rate.records_per_s: ", NumberText(*s->records_per_s), "\n");
      }
      s->canonical = c.substr(block_start);
    }
    for (const auto& [id, a] : out_->accepts_) {
      absl::StrAppend(&c, "accept ", a->dataset, " <- ", a->peer, "\n");
      if (a->max_record_bytes)
        absl::StrAppend(&c, "  max_record_bytes: ", *a->max_record_bytes, "\n");
      if (a->format) absl::StrAppend(&c, "  format: ", FormatName(*a->format), "\n");
      if (a->max_retention) {
        absl::StrAppend(&c, "  max_retention: ", absl::FormatDuration(*a->max_retention), "\n");
      }
    }
    out_->canonical_ = std::move(c);
    out_->version_ = "sha256:" + Sha256Hex(out_->canonical_).substr(0, 16);
  }

  const std::map<std::string, std::string>& files_;
  const std::set<std::string>& peers_;
  PolicySnapshot* out_;
  std::string file_;
  std::map<std::string, std::string> dataset_file_;
  std::map<std::string, std::shared_ptr<const SecretKey>> keys_;
};

absl::StatusOr<std::shared_ptr<const PolicySnapshot>> PolicySnapshot::FromFiles(
    const std::map<std::string, std::string>& files, const std::set<std::string>& known_peers) {
  auto snapshot = std::shared_ptr<PolicySnapshot>(new PolicySnapshot());
  Loader loader(files, known_peers, snapshot.get());
  // yaml-cpp reports misuse of a node (InvalidNode, BadConversion) by exception; the loader
  // checks before it converts, so one reaching here is a loader bug, reported as a bad policy
  // rather than a crash of the node.
  try {
    RETURN_IF_ERROR(loader.Run());
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("policy: ", e.what()));
  }
  return std::shared_ptr<const PolicySnapshot>(std::move(snapshot));
}

absl::StatusOr<std::shared_ptr<const PolicySnapshot>> PolicySnapshot::LoadDirectory(
    const std::string& dir, const std::set<std::string>& known_peers) {
  return LoadDirectory(dir, known_peers, LoadOptions{});
}

absl::StatusOr<std::shared_ptr<const PolicySnapshot>> PolicySnapshot::LoadDirectory(
    const std::string& dir, const std::set<std::string>& known_peers, const LoadOptions& options) {
  namespace fs = std::filesystem;
  std::map<std::string, std::string> files;
  auto read = [&](const fs::path& path, const std::string& name) -> absl::Status {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::PermissionDeniedError(absl::StrCat(path.string(), ": cannot read"));
    std::stringstream buffer;
    buffer << in.rdbuf();
    files[name] = buffer.str();
    return absl::OkStatus();
  };
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file() || !Loader::IsRuleFile(entry.path().string())) continue;
    RETURN_IF_ERROR(read(entry.path(), entry.path().string()));
  }
  if (ec) return absl::NotFoundError(absl::StrCat(dir, ": ", ec.message()));
  // Files the rules reference: polygons beside them (any depth) and keys.
  for (const auto& entry : fs::recursive_directory_iterator(dir, ec)) {
    const std::string ext = entry.path().extension().string();
    if (entry.is_regular_file() && (ext == ".geojson" || ext == ".json")) {
      RETURN_IF_ERROR(read(entry.path(), entry.path().lexically_normal().string()));
    }
  }
  const fs::path keys =
      options.keys_dir.empty() ? fs::path(dir) / "keys" : fs::path(options.keys_dir);
  for (const auto& entry : fs::directory_iterator(keys, ec)) {
    if (entry.is_regular_file() && entry.path().extension() == ".key") {
      RETURN_IF_ERROR(read(entry.path(), "keys/" + entry.path().filename().string()));
    }
  }
  auto snapshot = FromFiles(files, known_peers);
  for (auto& [name, bytes] : files) {
    if (name.starts_with("keys/")) OPENSSL_cleanse(bytes.data(), bytes.size());
  }
  return snapshot;
}

bool PolicySnapshot::Allows(absl::string_view topic, absl::string_view peer) const {
  return FindShare(topic, peer) != nullptr;
}

bool PolicySnapshot::Allows(absl::string_view topic, absl::string_view peer, absl::Time now) const {
  return StateAt(topic, peer, now) == ShareState::kActive;
}

ShareState PolicySnapshot::StateAt(absl::string_view topic, absl::string_view peer,
                                   absl::Time now) const {
  const Share* s = FindShare(topic, peer);
  if (s == nullptr) return ShareState::kNoShare;
  if (s->valid_from && now < *s->valid_from) return ShareState::kNotYetValid;
  if (s->valid_until && now >= *s->valid_until) return ShareState::kExpired;
  return ShareState::kActive;
}

std::vector<std::string> PolicySnapshot::TopicsFor(absl::string_view peer) const {
  std::vector<std::string> topics;
  for (const auto& [id, share] : shares_) {
    if (id.second == peer) topics.push_back(id.first);
  }
  return topics;
}

const Share* PolicySnapshot::FindShare(absl::string_view dataset, absl::string_view peer) const {
  auto it = shares_.find(std::make_pair(std::string(dataset), std::string(peer)));
  return it == shares_.end() ? nullptr : it->second.get();
}

std::vector<const Share*> PolicySnapshot::Shares() const {
  std::vector<const Share*> out;
  for (const auto& [id, s] : shares_) out.push_back(s.get());
  return out;
}

const AcceptRule* PolicySnapshot::FindAccept(absl::string_view peer,
                                             absl::string_view dataset) const {
  auto it = accepts_.find(std::make_pair(std::string(peer), std::string(dataset)));
  return it == accepts_.end() ? nullptr : it->second.get();
}

bool PolicySnapshot::HasAcceptRulesFor(absl::string_view peer) const {
  // Keyed (peer, dataset): the first key not below (peer, "") tells.
  auto it = accepts_.lower_bound(std::make_pair(std::string(peer), std::string()));
  return it != accepts_.end() && it->first.first == peer;
}

std::vector<const AcceptRule*> PolicySnapshot::AcceptRules() const {
  std::vector<const AcceptRule*> out;
  for (const auto& [id, a] : accepts_) out.push_back(a.get());
  return out;
}

std::optional<absl::Duration> PolicySnapshot::EffectiveRetention(
    absl::string_view peer, absl::string_view dataset,
    std::optional<absl::Duration> owner_retention) const {
  const AcceptRule* rule = FindAccept(peer, dataset);
  std::optional<absl::Duration> mine = rule != nullptr ? rule->max_retention : std::nullopt;
  if (!owner_retention) return mine;
  if (!mine) return owner_retention;
  return std::min(*owner_retention, *mine);
}

}  // namespace uop::policy
