// The few file operations the audit log needs, behind an interface so that tests can inject
// disk failures (LevelDB's Env is the model). PosixFileSystem is the real one.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace uop::audit {

// A file opened for appending. Append may buffer; Sync makes everything appended so far
// durable (fdatasync). Not thread-safe: one writer at a time.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual absl::Status Append(absl::string_view data) = 0;
  virtual absl::Status Sync() = 0;
  virtual absl::Status Close() = 0;
  // OK while the file is still the one at the path it was opened with. Appends to a file that
  // was deleted, moved away or shadowed (its directory replaced) succeed and fsync, but nobody
  // will ever read them: the audit log checks this after every fsync.
  virtual absl::Status CheckLinked() = 0;
};

// Implementations must be safe for concurrent use by several threads.
class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // Opens `path` for appending, creating it if absent.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> OpenAppendable(const std::string& path) = 0;
  virtual absl::StatusOr<std::string> ReadFile(const std::string& path) = 0;
  virtual absl::Status WriteFileAtomically(const std::string& path, absl::string_view data) = 0;
  // Names (not paths) of the entries of `dir`, unsorted.
  virtual absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) = 0;
  virtual absl::Status CreateDir(const std::string& dir) = 0;  // OK if it exists
  virtual absl::Status Truncate(const std::string& path, uint64_t size) = 0;
  virtual absl::Status SyncDir(const std::string& dir) = 0;
  virtual bool Exists(const std::string& path) = 0;
  virtual absl::StatusOr<uint64_t> FileSize(const std::string& path) = 0;
  // OK if files can be created in `dir` (the next segment); PermissionDenied or the system's
  // error otherwise. Cheap (one access(2)): the audit log asks at every group commit.
  virtual absl::Status CheckWritableDir(const std::string& dir) = 0;

  // The process-wide POSIX implementation; never deleted.
  static FileSystem* Default();
};

}  // namespace uop::audit
