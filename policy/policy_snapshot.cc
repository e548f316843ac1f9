// Loading and validating sharing rules; versioning by content hash.
#include "policy/policy_snapshot.h"

#include <openssl/evp.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "yaml-cpp/yaml.h"

namespace uop::policy {
namespace {

absl::Status PositionError(const std::string& file, const YAML::Mark& mark, absl::string_view key,
                           absl::string_view what) {
  if (mark.is_null()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": key '", key, "': ", what));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(file, ":", mark.line + 1, ":", mark.column + 1, ": key '", key, "': ", what));
}

std::string Sha256Hex(absl::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), len));
}

}  // namespace

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

absl::StatusOr<std::shared_ptr<const PolicySnapshot>> PolicySnapshot::FromFiles(
    const std::map<std::string, std::string>& files, const std::set<std::string>& known_peers) {
  auto snapshot = std::shared_ptr<PolicySnapshot>(new PolicySnapshot());
  std::map<std::string, std::string> dataset_file;  // topic -> file that defines it
  std::string hashed;
  for (const auto& [file, text] : files) {
    // Only the file's name and content count, so every node with the same rules (wherever its
    // policy directory is) stamps the same version.
    const std::string name = std::filesystem::path(file).filename().string();
    absl::StrAppend(&hashed, name.size(), ":", name, text.size(), ":", text);
    YAML::Node root;
    try {
      root = YAML::Load(text);
    } catch (const YAML::ParserException& e) {
      return PositionError(file, e.mark, "(syntax)", e.msg);
    }
    if (root.IsNull()) continue;  // an empty file shares nothing
    if (!root.IsMap()) return PositionError(file, root.Mark(), "(top level)", "expected a mapping");
    for (const auto& kv : root) {
      const std::string key = kv.first.Scalar();
      if (key != "dataset" && key != "share") {
        return PositionError(file, kv.first.Mark(), key,
                             "unknown key; expected one of: dataset, share");
      }
    }
    const YAML::Node dataset = root["dataset"];
    if (!dataset.IsDefined() || !dataset.IsScalar()) {
      return PositionError(file, dataset.IsDefined() ? dataset.Mark() : root.Mark(), "dataset",
                           "missing or not a topic name");
    }
    const std::string topic = dataset.Scalar();
    if (!IsValidTopicName(topic)) {
      return PositionError(file, dataset.Mark(), "dataset",
                           absl::StrCat("'", topic, "' is not a valid Kafka topic name"));
    }
    if (auto [it, inserted] = dataset_file.emplace(topic, file); !inserted) {
      return PositionError(file, dataset.Mark(), "dataset",
                           absl::StrCat("'", topic, "' is already defined in ", it->second));
    }
    std::set<std::string>& peers = snapshot->shares_[topic];
    const YAML::Node share = root["share"];
    if (!share.IsDefined() || share.IsNull()) continue;  // defined but shared with nobody
    if (!share.IsSequence()) {
      return PositionError(file, share.Mark(), "share", "expected a list of {peer: name}");
    }
    for (size_t i = 0; i < share.size(); ++i) {
      const YAML::Node entry = share[i];
      const std::string where = absl::StrCat("share[", i, "]");
      if (!entry.IsMap()) return PositionError(file, entry.Mark(), where, "expected {peer: name}");
      for (const auto& kv : entry) {
        if (kv.first.Scalar() != "peer") {
          return PositionError(file, kv.first.Mark(), where + "." + kv.first.Scalar(),
                               "unknown key; expected: peer");
        }
      }
      const YAML::Node peer = entry["peer"];
      if (!peer.IsDefined() || !peer.IsScalar()) {
        return PositionError(file, entry.Mark(), where + ".peer", "missing peer name");
      }
      if (!known_peers.contains(peer.Scalar())) {
        return PositionError(
            file, peer.Mark(), where + ".peer",
            absl::StrCat("unknown peer '", peer.Scalar(), "'; configured peers: ",
                         known_peers.empty() ? "(none)" : absl::StrJoin(known_peers, ", ")));
      }
      if (!peers.insert(peer.Scalar()).second) {
        return PositionError(file, peer.Mark(), where + ".peer",
                             absl::StrCat("peer '", peer.Scalar(), "' listed twice"));
      }
    }
  }
  snapshot->version_ = "sha256:" + Sha256Hex(hashed).substr(0, 16);
  return std::shared_ptr<const PolicySnapshot>(std::move(snapshot));
}

absl::StatusOr<std::shared_ptr<const PolicySnapshot>> PolicySnapshot::LoadDirectory(
    const std::string& dir, const std::set<std::string>& known_peers) {
  std::map<std::string, std::string> files;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string ext = entry.path().extension().string();
    if (!entry.is_regular_file() || (ext != ".yaml" && ext != ".yml")) continue;
    std::ifstream in(entry.path());
    if (!in)
      return absl::PermissionDeniedError(absl::StrCat(entry.path().string(), ": cannot read"));
    std::stringstream buffer;
    buffer << in.rdbuf();
    files[entry.path().string()] = buffer.str();
  }
  if (ec) return absl::NotFoundError(absl::StrCat(dir, ": ", ec.message()));
  return FromFiles(files, known_peers);
}

bool PolicySnapshot::Allows(absl::string_view topic, absl::string_view peer) const {
  auto it = shares_.find(topic);
  return it != shares_.end() && it->second.contains(std::string(peer));
}

std::vector<std::string> PolicySnapshot::TopicsFor(absl::string_view peer) const {
  std::vector<std::string> topics;
  for (const auto& [topic, peers] : shares_) {
    if (peers.contains(std::string(peer))) topics.push_back(topic);
  }
  return topics;
}

}  // namespace uop::policy
