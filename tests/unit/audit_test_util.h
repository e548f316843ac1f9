// Test doubles for the audit library: an in-memory FileSystem that injects disk failures and
// simulates a crash (unsynced bytes are lost), a settable Clock, and entry builders.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "audit/audit_log.h"
#include "audit/entry.h"
#include "audit/file_system.h"

namespace uop::audit::testing {

class MemFileSystem final : public FileSystem {
 public:
  struct File {
    std::string data;
    size_t synced = 0;
  };

  absl::StatusOr<std::unique_ptr<WritableFile>> OpenAppendable(const std::string& path) override {
    absl::MutexLock lock(&mu_);
    if (!files_.count(path) && fail_creates_) {
      return absl::PermissionDeniedError(absl::StrCat("open ", path, ": Permission denied"));
    }
    files_[path];
    return std::unique_ptr<WritableFile>(new MemFile(this, path));
  }
  absl::StatusOr<std::string> ReadFile(const std::string& path) override {
    absl::MutexLock lock(&mu_);
    auto it = files_.find(path);
    if (it == files_.end()) return absl::NotFoundError(absl::StrCat("open ", path));
    return it->second.data;
  }
  absl::Status WriteFileAtomically(const std::string& path, absl::string_view data) override {
    absl::MutexLock lock(&mu_);
    if (fail_creates_) return absl::PermissionDeniedError(absl::StrCat("open ", path));
    files_[path] = File{std::string(data), data.size()};
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) override {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> names;
    const std::string prefix = dir + "/";
    for (const auto& [path, file] : files_) {
      absl::string_view name = path;
      if (absl::ConsumePrefix(&name, prefix) && name.find('/') == absl::string_view::npos) {
        names.emplace_back(name);
      }
    }
    return names;
  }
  absl::Status CreateDir(const std::string&) override { return absl::OkStatus(); }
  absl::Status Truncate(const std::string& path, uint64_t size) override {
    absl::MutexLock lock(&mu_);
    if (fail_writes_) return absl::UnavailableError(absl::StrCat("truncate ", path, ": I/O error"));
    File& f = files_[path];
    f.data.resize(std::min<size_t>(f.data.size(), size));
    f.synced = std::min(f.synced, f.data.size());
    return absl::OkStatus();
  }
  absl::Status SyncDir(const std::string&) override { return absl::OkStatus(); }
  bool Exists(const std::string& path) override {
    absl::MutexLock lock(&mu_);
    return files_.count(path) > 0;
  }
  absl::StatusOr<uint64_t> FileSize(const std::string& path) override {
    absl::MutexLock lock(&mu_);
    auto it = files_.find(path);
    if (it == files_.end()) return absl::NotFoundError(absl::StrCat("stat ", path));
    return it->second.data.size();
  }
  absl::Status CheckWritableDir(const std::string& dir) override {
    absl::MutexLock lock(&mu_);
    if (fail_creates_) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot create files in ", dir, ": Permission denied"));
    }
    return absl::OkStatus();
  }

  // Disk failures, as the kernel reports them.
  void set_fail_writes(bool v) {
    absl::MutexLock lock(&mu_);
    fail_writes_ = v;
  }
  void set_fail_syncs(bool v) {
    absl::MutexLock lock(&mu_);
    fail_syncs_ = v;
  }
  void set_fail_creates(bool v) {
    absl::MutexLock lock(&mu_);
    fail_creates_ = v;
  }
  // Called (without the lock) at the start of every Sync, e.g. to hold the commit thread.
  void set_before_sync(std::function<void()> hook) {
    absl::MutexLock lock(&mu_);
    before_sync_ = std::move(hook);
  }
  int syncs() {
    absl::MutexLock lock(&mu_);
    return syncs_;
  }
  int syncs_attempted() {  // including failed ones
    absl::MutexLock lock(&mu_);
    return syncs_attempted_;
  }
  // kill -9: whatever was not synced is gone.
  void Crash() {
    absl::MutexLock lock(&mu_);
    for (auto& [path, f] : files_) f.data.resize(f.synced);
  }
  std::string Get(const std::string& path) {
    absl::MutexLock lock(&mu_);
    return files_[path].data;
  }
  void Set(const std::string& path, std::string data) {
    absl::MutexLock lock(&mu_);
    files_[path] = File{data, data.size()};
  }
  void Remove(const std::string& path) {
    absl::MutexLock lock(&mu_);
    files_.erase(path);
  }

 private:
  class MemFile final : public WritableFile {
   public:
    MemFile(MemFileSystem* fs, std::string path) : fs_(fs), path_(std::move(path)) {}
    absl::Status Append(absl::string_view data) override {
      absl::MutexLock lock(&fs_->mu_);
      if (fs_->fail_writes_) {
        return absl::ResourceExhaustedError(
            absl::StrCat("write ", path_, ": No space left on device"));
      }
      // Like an unlinked inode: a removed file takes appends that nobody will read.
      if (auto it = fs_->files_.find(path_); it != fs_->files_.end()) {
        it->second.data.append(data.data(), data.size());
      }
      return absl::OkStatus();
    }
    absl::Status Sync() override {
      std::function<void()> hook;
      {
        absl::MutexLock lock(&fs_->mu_);
        hook = fs_->before_sync_;
      }
      if (hook) hook();
      absl::MutexLock lock(&fs_->mu_);
      ++fs_->syncs_attempted_;
      if (fs_->fail_syncs_) {
        return absl::UnavailableError(absl::StrCat("fdatasync ", path_, ": Input/output error"));
      }
      ++fs_->syncs_;
      if (auto it = fs_->files_.find(path_); it != fs_->files_.end()) {
        it->second.synced = it->second.data.size();
      }
      return absl::OkStatus();
    }
    absl::Status Close() override { return absl::OkStatus(); }
    absl::Status CheckLinked() override {
      absl::MutexLock lock(&fs_->mu_);
      if (fs_->files_.count(path_) == 0) {
        return absl::DataLossError(
            absl::StrCat(path_, " was deleted: what the log appends to it would be lost"));
      }
      return absl::OkStatus();
    }

   private:
    MemFileSystem* fs_;
    std::string path_;
  };

  absl::Mutex mu_;
  std::map<std::string, File> files_ ABSL_GUARDED_BY(mu_);
  bool fail_writes_ ABSL_GUARDED_BY(mu_) = false;
  bool fail_syncs_ ABSL_GUARDED_BY(mu_) = false;
  bool fail_creates_ ABSL_GUARDED_BY(mu_) = false;
  int syncs_ ABSL_GUARDED_BY(mu_) = 0;
  int syncs_attempted_ ABSL_GUARDED_BY(mu_) = 0;
  std::function<void()> before_sync_ ABSL_GUARDED_BY(mu_);
};

class FakeClock final : public Clock {
 public:
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_) = absl::FromUnixSeconds(1764680000);
};

inline Entry BatchEntry(EntryType type, std::string peer, int64_t first, int64_t count,
                        std::string digest_seed = "") {
  Entry e;
  e.type = type;
  e.peer = std::move(peer);
  e.dataset = "noise";
  e.topic = "noise.observations";
  e.partition = 0;
  e.first_offset = first;
  e.last_offset = first + count - 1;
  e.record_count = static_cast<uint64_t>(count);
  e.byte_count = static_cast<uint64_t>(count) * 180;
  BatchDigest d;
  for (int64_t i = 0; i < count; ++i) {
    d.AddRecord(absl::StrCat("ds-", i % 7),
                absl::StrCat(digest_seed, "{\"result\":", first + i, "}"));
  }
  e.batch_sha256 = d.Finish();
  e.policy_version = "sha256:3f1a";
  return e;
}

}  // namespace uop::audit::testing
