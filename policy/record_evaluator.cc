// One parse per record (simdjson DOM), then one pass that writes the output while applying
// keep, drop, pseudonymise and generalise rules.
#include "policy/record_evaluator.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>

#include <simdjson.h>

#include "absl/base/attributes.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "policy/geometry.h"

namespace uop::policy {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::element_type;
using simdjson::dom::object;

namespace {

// An output buffer over a std::string with inline appends: std::string's own append and
// push_back are out-of-line calls into libstdc++ (an extern template), which cost more than the
// rest of the writer. The string is sized up front and trimmed when the Out goes away.
class Out {
 public:
  Out(std::string* s, size_t hint) : s_(s), len_(s->size()) {
    if (s_->size() < len_ + hint + 256) s_->resize(len_ + hint + 256);
    data_ = s_->data();
    cap_ = s_->size();
  }
  ~Out() { s_->resize(len_); }
  Out(const Out&) = delete;
  Out& operator=(const Out&) = delete;

  ABSL_ATTRIBUTE_ALWAYS_INLINE void push_back(char c) {
    if (len_ == cap_) Grow(1);
    data_[len_++] = c;
  }
  ABSL_ATTRIBUTE_ALWAYS_INLINE void append(const char* p, size_t n) {
    if (cap_ - len_ < n) Grow(n);
    std::memcpy(data_ + len_, p, n);
    len_ += n;
  }
  void append(std::string_view v) { append(v.data(), v.size()); }
  void append(const char* p) { append(p, std::strlen(p)); }
  size_t size() const { return len_; }
  void resize(size_t n) { len_ = n; }  // only ever shrinks: rolls back a member

 private:
  void Grow(size_t n) {
    s_->resize(std::max(cap_ * 2, len_ + n + 64));
    data_ = s_->data();
    cap_ = s_->size();
  }
  std::string* s_;
  char* data_;
  size_t len_;
  size_t cap_;
};

constexpr std::array<bool, 256> kNeedsEscape = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = true;
  t['"'] = t['\\'] = true;
  return t;
}();

// True if any of the 8 bytes of `x` is below 0x20, '"' or '\\' (exact: Bit Twiddling Hacks'
// haszero / hasless, valid for thresholds up to 128).
inline bool AnyNeedsEscape(uint64_t x) {
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHigh = 0x8080808080808080ULL;
  const uint64_t control = (x - kOnes * 0x20) & ~x & kHigh;
  const uint64_t q = x ^ (kOnes * '"');
  const uint64_t b = x ^ (kOnes * '\\');
  return (control | ((q - kOnes) & ~q & kHigh) | ((b - kOnes) & ~b & kHigh)) != 0;
}

template <typename O>
void JsonStringTo(O* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t run = 0;  // start of the current stretch that needs no escaping
  size_t i = 0;
  // Most strings need no escape at all: skip 8 bytes at a time while none does.
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, s.data() + i, 8);
    if (AnyNeedsEscape(word)) break;
  }
  for (; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (!kNeedsEscape[c]) continue;
    out->append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        out->append("\\u00");
        out->push_back(kHex[c >> 4]);
        out->push_back(kHex[c & 0xf]);
    }
  }
  out->append(s.data() + run, s.size() - run);
  out->push_back('"');
}

template <typename O>
void JsonDoubleTo(O* out, double v) {
  char buf[40];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  std::string_view text(buf, static_cast<size_t>(res.ptr - buf));
  out->append(text);
  if (text.find_first_of(".e") == std::string_view::npos) out->append(".0");
}

}  // namespace

void AppendJsonString(std::string* out, std::string_view s) { JsonStringTo(out, s); }
void AppendJsonDouble(std::string* out, double v) { JsonDoubleTo(out, v); }

std::string FormatTime(int64_t epoch_ms) {
  const absl::Time t = absl::FromUnixMillis(epoch_ms);
  return absl::FormatTime(epoch_ms % 1000 == 0 ? "%Y-%m-%d%ET%H:%M:%SZ" : "%Y-%m-%d%ET%H:%M:%E3SZ",
                          t, absl::UTCTimeZone());
}

namespace {

enum PathKind : uint8_t { kKeep = 1, kDrop = 2, kPseudo = 4, kLocation = 8 };

struct PathRule {
  std::string path;
  uint8_t kinds = 0;
};

// A rule still matching below the current member: `pos` is where the rest of its path starts.
struct Live {
  uint16_t rule;
  uint16_t pos;
};

void AppendInt(Out* out, auto v) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, static_cast<size_t>(res.ptr - buf));
}

// All members of `root` at the dotted `path`. A key may itself contain dots ("@iot.id"): a
// member matches when the rest of the path equals its key or starts with its key and a dot.
void Resolve(const element& e, std::string_view path, std::vector<element>* found, int depth) {
  object obj;
  if (depth > 64 || e.get_object().get(obj) != simdjson::SUCCESS) return;
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const std::string_view k = it.key();
    if (path.size() < k.size() || path.compare(0, k.size(), k) != 0) continue;
    if (path.size() == k.size()) {
      found->push_back(it.value());
    } else if (path[k.size()] == '.') {
      Resolve(it.value(), path.substr(k.size() + 1), found, depth + 1);
    }
  }
}

bool ParseEventTime(std::string_view text, int64_t* ms) {
  // A SensorThings interval "start/end" is placed by its start.
  if (size_t slash = text.find('/'); slash != std::string_view::npos) text = text.substr(0, slash);
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, absl::string_view(text.data(), text.size()), &t, &err)) {
    return false;
  }
  *ms = absl::ToUnixMillis(t);
  return true;
}

}  // namespace

struct RecordEvaluator::Impl {
  const Share* share;
  simdjson::dom::parser parser;
  std::unique_ptr<Pseudonymiser> pseudonymiser;
  std::vector<PathRule> rules;
  std::vector<std::vector<Live>> live_by_depth;
  std::vector<element> found;
  std::string scratch;
  std::vector<std::string>* trace = nullptr;
  std::string path_for_trace;
  bool has_keep = false;
  bool generalise = false;

  explicit Impl(const Share* s) : share(s) {
    if (share->fields.key != nullptr) {
      pseudonymiser = std::make_unique<Pseudonymiser>(share->fields.key->bytes());
    }
    auto add = [&](const std::string& path, uint8_t kind) {
      for (PathRule& r : rules) {
        if (r.path == path) {
          r.kinds |= kind;
          return;
        }
      }
      rules.push_back({path, kind});
    };
    for (const auto& p : share->fields.keep) add(p, kKeep);
    for (const auto& p : share->fields.drop) add(p, kDrop);
    for (const auto& p : share->fields.pseudonymise) add(p, kPseudo);
    generalise = share->spatial.generalise != SpatialRules::Generalise::kNone;
    if (generalise && !share->location.empty()) add(share->location, kLocation);
    has_keep = !share->fields.keep.empty();
    live_by_depth.resize(4);
  }

  // Formats only when explaining: the hot path must not build strings it throws away.
  template <typename... Args>
  void Note(const Args&... args) {
    if (trace != nullptr) trace->push_back(absl::StrCat(args...));
  }

  void PseudonymOf(const element& e, Out* out) {
    char hex[Pseudonymiser::kHexSize];
    std::string_view s;
    if (e.get_string().get(s) == simdjson::SUCCESS) {
      pseudonymiser->Hex(s, hex);
    } else {
      scratch.clear();
      {
        Out canonical(&scratch, 64);
        WriteValue(e, &canonical, false);
      }
      pseudonymiser->Hex(scratch, hex);
    }
    out->append(hex, sizeof(hex));
  }

  // A position inside the location: lon and lat generalised, further members (altitude) kept.
  bool WritePosition(const array& a, Out* out) {
    if (a.size() < 2) return false;
    double lon = 0, lat = 0;
    size_t i = 0;
    for (element n : a) {
      double v = 0;
      if (n.get_double().get(v) != simdjson::SUCCESS || !std::isfinite(v)) return false;
      (i == 0 ? lon : lat) = v;
      if (++i == 2) break;
    }
    if (share->spatial.generalise == SpatialRules::Generalise::kGrid) {
      SnapToGrid(share->spatial.grid_m, &lon, &lat);
    } else {
      lon = RoundToDecimals(lon, share->spatial.decimals);
      lat = RoundToDecimals(lat, share->spatial.decimals);
    }
    out->push_back('[');
    JsonDoubleTo(out, lon);
    out->push_back(',');
    JsonDoubleTo(out, lat);
    i = 0;
    for (element n : a) {
      if (i++ < 2) continue;
      out->push_back(',');
      WriteValue(n, out, false);
    }
    out->push_back(']');
    return true;
  }

  // Writes `e` whole. Inside the location (`in_location`), positions are generalised and
  // "bbox" members are left out (they would tell the exact extent).
  void WriteValue(const element& e, Out* out, bool in_location) {
    switch (e.type()) {
      case element_type::OBJECT: {
        out->push_back('{');
        bool first = true;
        const object obj(e);
        for (auto it = obj.begin(); it != obj.end(); ++it) {
          const std::string_view key = it.key();
          if (in_location && key == "bbox") continue;
          if (!first) out->push_back(',');
          first = false;
          JsonStringTo(out, key);
          out->push_back(':');
          WriteValue(it.value(), out, in_location);
        }
        out->push_back('}');
        return;
      }
      case element_type::ARRAY: {
        array a(e);
        if (in_location && a.size() >= 2) {
          const element first = a.at(0).value_unsafe();
          if (first.is_number()) {
            const size_t mark = out->size();
            if (WritePosition(a, out)) return;
            out->resize(mark);
          }
        }
        out->push_back('[');
        bool first = true;
        for (element v : a) {
          if (!first) out->push_back(',');
          first = false;
          WriteValue(v, out, in_location);
        }
        out->push_back(']');
        return;
      }
      case element_type::STRING:
        JsonStringTo(out, std::string_view(e));
        return;
      case element_type::INT64:
        AppendInt(out, int64_t(e));
        return;
      case element_type::UINT64:
        AppendInt(out, uint64_t(e));
        return;
      case element_type::DOUBLE:
        JsonDoubleTo(out, double(e));
        return;
      case element_type::BOOL:
        out->append(bool(e) ? "true" : "false");
        return;
      case element_type::NULL_VALUE:
        out->append("null");
        return;
    }
  }

  // Writes the members of `obj` that the field rules let out. `kept`: an ancestor (or the
  // empty keep list) keeps everything below unless dropped. Returns how many were written.
  int WriteObject(const object& obj, size_t depth, bool kept, bool in_location, Out* out) {
    if (live_by_depth.size() <= depth + 1) live_by_depth.resize(depth + 2);
    int written = 0;
    out->push_back('{');
    // Iterators, not `for (auto field : obj)`: GCC builds simdjson's key_value_pair with two
    // stores and reads it back with one 16-byte load, a store-forwarding stall per member.
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      const std::string_view key = it.key();
      std::vector<Live>& child = live_by_depth[depth + 1];
      child.clear();
      uint8_t exact = 0;
      bool keep_below = false;
      for (const Live& l : live_by_depth[depth]) {
        const std::string& p = rules[l.rule].path;
        // The first byte rules out almost every pair before a memcmp call.
        if (p.size() - l.pos < key.size() || key.empty() || p[l.pos] != key[0] ||
            std::memcmp(p.data() + l.pos, key.data(), key.size()) != 0) {
          continue;
        }
        const size_t next = l.pos + key.size();
        if (next == p.size()) {
          exact |= rules[l.rule].kinds;
        } else if (p[next] == '.') {
          child.push_back({l.rule, static_cast<uint16_t>(next + 1)});
          keep_below = keep_below || (rules[l.rule].kinds & kKeep) != 0;
        }
      }
      if (trace != nullptr) {
        const size_t mark = path_for_trace.size();
        if (mark > 0) path_for_trace.push_back('.');
        path_for_trace.append(key);
        WriteMember(it.value(), key, depth, kept, in_location, exact, keep_below, out, &written);
        path_for_trace.resize(mark);
      } else {
        WriteMember(it.value(), key, depth, kept, in_location, exact, keep_below, out, &written);
      }
    }
    out->push_back('}');
    return written;
  }

  void WriteMember(const element& value, std::string_view key, size_t depth, bool kept,
                   bool in_location, uint8_t exact, bool keep_below, Out* out, int* written) {
    if (exact & kDrop) {
      Note("fields.drop: ", path_for_trace, " removed");
      return;
    }
    const bool member_kept = kept || (exact & kKeep) != 0;
    if (!member_kept && !keep_below) {
      if (has_keep && depth == 0) Note("fields.keep: ", path_for_trace, " not kept");
      return;
    }
    if (in_location && key == "bbox") return;
    const size_t mark = out->size();
    if (*written > 0) out->push_back(',');
    JsonStringTo(out, key);
    out->push_back(':');
    const bool location = in_location || (exact & kLocation) != 0;
    if (member_kept && (exact & kPseudo)) {
      out->push_back('"');
      PseudonymOf(value, out);
      out->push_back('"');
      Note("fields.pseudonymise: ", path_for_trace, " replaced by HMAC-SHA256 (key '",
           share->fields.key->name(), "')");
      ++*written;
      return;
    }
    if ((exact & kLocation) && member_kept && trace != nullptr) {
      Note(share->spatial.generalise == SpatialRules::Generalise::kGrid
               ? absl::StrCat("spatial.generalise: ", path_for_trace, " snapped to a ",
                              share->spatial.grid_m, " m grid")
               : absl::StrCat("spatial.generalise: ", path_for_trace, " rounded to ",
                              share->spatial.decimals, " decimals"));
    }
    object obj;
    const bool is_object = value.get_object().get(obj) == simdjson::SUCCESS;
    if (is_object && !live_by_depth[depth + 1].empty()) {
      const int n = WriteObject(obj, depth + 1, member_kept, location, out);
      if (n == 0 && !member_kept) {
        out->resize(mark);  // only a path to kept members, and none of them is here
        return;
      }
    } else if (!member_kept) {
      out->resize(mark);  // a keep path leads below a value that is not an object
      return;
    } else {
      WriteValue(value, out, location);
    }
    ++*written;
  }

  WithheldReason Evaluate(std::string_view key, std::string_view value, int64_t timestamp_ms,
                          absl::Time now, std::string* out_key, std::string* out_value,
                          AggregateInput* aggregate) {
    const Share& s = *share;
    if (s.retention.has_value() && !s.aggregate.has_value() &&
        absl::FromUnixMillis(timestamp_ms) + *s.retention < now) {
      if (trace != nullptr) {
        Note("retention: record time ", FormatTime(timestamp_ms), " is older than ",
             absl::FormatDuration(*s.retention), ": withheld");
      }
      return WithheldReason::kPastRetention;
    }
    element root;
    if (s.identity() || s.format == Format::kBytes) {
      out_key->assign(key);
      out_value->assign(value);
      return WithheldReason::kNone;
    }
    if (auto err = parser.parse(value.data(), value.size()).get(root); err != simdjson::SUCCESS) {
      Note("format ", FormatName(s.format), ": not JSON (", simdjson::error_message(err),
           "): withheld");
      return WithheldReason::kNotJson;
    }
    if (s.format == Format::kSensorThingsObservation) {
      object obj;
      std::string_view t;
      if (root.get_object().get(obj) != simdjson::SUCCESS ||
          obj["result"].error() != simdjson::SUCCESS ||
          obj["phenomenonTime"].get_string().get(t) != simdjson::SUCCESS) {
        Note(
            "format sensorthings-observation: not an object with 'result' and a string "
            "'phenomenonTime': withheld");
        return WithheldReason::kNotObservation;
      }
    }
    if (!s.location.empty() && s.spatial.active) {
      found.clear();
      Resolve(root, s.location, &found, 0);
      if (found.size() > 1) {
        Note("location: ", s.location, " appears ", found.size(), " times: withheld");
        return WithheldReason::kBadLocation;
      }
      if (found.empty() || found[0].is_null()) {
        if (s.spatial.deny_without_location) {
          Note(
              absl::StrCat("spatial.no_location: deny: no geometry at ", s.location, ": withheld"));
          return WithheldReason::kNoLocation;
        }
        Note("spatial.no_location: allow: no geometry at ", s.location);
      } else if (s.spatial.within != nullptr) {
        switch (s.spatial.within->Check(found[0])) {
          case Containment::kInvalid:
            Note("location: ", s.location, " is not a GeoJSON geometry: withheld");
            return WithheldReason::kBadLocation;
          case Containment::kOutside:
            Note("spatial.within ", s.spatial.within_source, ": outside: withheld");
            return WithheldReason::kOutsideArea;
          case Containment::kInside:
            Note("spatial.within ", s.spatial.within_source, ": inside");
            break;
        }
      }
    }
    if (aggregate != nullptr) return ExtractAggregate(root, timestamp_ms, aggregate);
    // The Kafka key.
    switch (s.fields.record_key) {
      case RecordKeyRule::kKeep:
        out_key->assign(key);
        break;
      case RecordKeyRule::kDrop:
        out_key->clear();
        Note("fields.record_key: drop: the record leaves without a key");
        break;
      case RecordKeyRule::kPseudonymise:
        out_key->clear();
        if (!key.empty()) pseudonymiser->AppendHex(key, out_key);
        Note("fields.record_key: pseudonymise: key replaced by HMAC-SHA256");
        break;
    }
    if (trace != nullptr && has_keep) {
      std::string kept;
      for (const auto& k : s.fields.keep) absl::StrAppend(&kept, kept.empty() ? "" : ", ", k);
      Note("fields.keep: only these leave: ", kept);
    }
    out_value->clear();
    Out out(out_value, value.size());
    live_by_depth[0].clear();
    for (size_t i = 0; i < rules.size(); ++i) live_by_depth[0].push_back({uint16_t(i), 0});
    path_for_trace.clear();
    object obj;
    if (root.get_object().get(obj) == simdjson::SUCCESS) {
      WriteObject(obj, 0, !has_keep, false, &out);
    } else {
      WriteValue(root, &out, false);  // a JSON array or scalar: paths cannot address it
    }
    return WithheldReason::kNone;
  }

  WithheldReason ExtractAggregate(const element& root, int64_t timestamp_ms, AggregateInput* in) {
    const AggregateRules& a = *share->aggregate;
    in->event_time_ms = timestamp_ms;
    if (!a.time.empty()) {
      found.clear();
      Resolve(root, a.time, &found, 0);
      std::string_view text;
      if (found.size() != 1 || found[0].get_string().get(text) != simdjson::SUCCESS ||
          !ParseEventTime(text, &in->event_time_ms)) {
        Note("aggregate.time: ", a.time, " is not one RFC 3339 time: withheld");
        return WithheldReason::kNoAggregateValue;
      }
    }
    // RFC 3339 years 0000-9999: window arithmetic on anything beyond would overflow int64
    // (a fuzzer found year 24444444052).
    constexpr int64_t kMinEventMs = -62167219200000;  // 0000-01-01T00:00:00Z
    constexpr int64_t kMaxEventMs = 253402300799999;  // 9999-12-31T23:59:59.999Z
    if (in->event_time_ms < kMinEventMs || in->event_time_ms > kMaxEventMs) {
      Note("aggregate.time: ", a.time.empty() ? "the record timestamp" : a.time,
           " is not between the years 0 and 9999: withheld");
      return WithheldReason::kNoAggregateValue;
    }
    found.clear();
    Resolve(root, a.of, &found, 0);
    if (found.size() != 1 || !found[0].is_number() ||
        found[0].get_double().get(in->value) != simdjson::SUCCESS || !std::isfinite(in->value)) {
      Note("aggregate.of: ", a.of, " is not one number: withheld");
      return WithheldReason::kNoAggregateValue;
    }
    in->group.clear();
    Out group(&in->group, 80);
    if (!a.by.empty()) {
      found.clear();
      Resolve(root, a.by, &found, 0);
      if (found.size() != 1 || found[0].is_object() || found[0].is_array()) {
        Note("aggregate.by: ", a.by, " is not one scalar: withheld");
        return WithheldReason::kNoAggregateValue;
      }
      bool pseudonymise = false;
      for (const auto& p : share->fields.pseudonymise) pseudonymise = pseudonymise || p == a.by;
      if (pseudonymise) {
        group.push_back('"');
        PseudonymOf(found[0], &group);
        group.push_back('"');
        Note("fields.pseudonymise: aggregate key ", a.by, " replaced by HMAC-SHA256 (key '",
             share->fields.key->name(), "')");
      } else {
        WriteValue(found[0], &group, false);
      }
    }
    return WithheldReason::kNone;
  }
};

RecordEvaluator::RecordEvaluator(const Share* share) : impl_(std::make_unique<Impl>(share)) {}
RecordEvaluator::~RecordEvaluator() = default;

WithheldReason RecordEvaluator::Evaluate(std::string_view key, std::string_view value,
                                         int64_t timestamp_ms, absl::Time now, std::string* out_key,
                                         std::string* out_value, AggregateInput* aggregate,
                                         std::vector<std::string>* trace) {
  impl_->trace = trace;
  WithheldReason r = impl_->Evaluate(key, value, timestamp_ms, now, out_key, out_value, aggregate);
  impl_->trace = nullptr;
  return r;
}

std::string RecordEvaluator::Pseudonym(std::string_view bytes) {
  std::string out;
  if (impl_->pseudonymiser != nullptr) impl_->pseudonymiser->AppendHex(bytes, &out);
  return out;
}

}  // namespace uop::policy
