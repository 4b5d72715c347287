//===- File.cpp - Reading, mapping and atomically writing files -----------===//

#include "File.h"

#include "Error.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace moert::detail {

FileDescriptor &FileDescriptor::operator=(FileDescriptor &&other) {
  if (this != &other) {
    close();
    fd = other.fd;
    other.fd = -1;
  }
  return *this;
}

FileDescriptor::~FileDescriptor() { close(); }

int FileDescriptor::close() {
  if (fd < 0)
    return 0;
  int result = ::close(fd);
  fd = -1;
  return result == 0 ? 0 : errno;
}

FileDescriptor openRegularFile(const std::string &path, const std::string &what,
                               uint64_t *size) {
  // O_NONBLOCK: opening a FIFO must not hang; it is rejected below.
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) {
    int err = errno;
    if (err == ENOENT)
      fail(MOE_STATUS_NOT_FOUND, "{} '{}' does not exist", what, path);
    fail(MOE_STATUS_IO_ERROR, "cannot open {} '{}': {}", what, path,
         errnoMessage(err));
  }
  struct stat info;
  if (fstat(fd.get(), &info) != 0)
    fail(MOE_STATUS_IO_ERROR, "cannot stat {} '{}': {}", what, path,
         errnoMessage(errno));
  if (S_ISDIR(info.st_mode))
    fail(MOE_STATUS_INVALID_ARGUMENT, "{} '{}' is a directory", what, path);
  if (!S_ISREG(info.st_mode))
    fail(MOE_STATUS_INVALID_ARGUMENT, "{} '{}' is not a regular file", what,
         path);
  *size = static_cast<uint64_t>(info.st_size);
  return fd;
}

MappedFile::MappedFile(const std::string &path, const std::string &what) {
  uint64_t size;
  FileDescriptor fd = openRegularFile(path, what, &size);
  if (size == 0)
    return; // mmap refuses empty mappings; callers see size() == 0.
  void *map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (map == MAP_FAILED)
    fail(MOE_STATUS_IO_ERROR, "cannot map {} '{}': {}", what, path,
         errnoMessage(errno));
  bytes = static_cast<const uint8_t *>(map);
  length = size;
}

MappedFile::~MappedFile() {
  if (bytes)
    munmap(const_cast<uint8_t *>(bytes), length);
}

namespace {

/// Removes the temporary file unless it was renamed into place.
struct TemporaryFile {
  std::string path;
  bool committed = false;
  ~TemporaryFile() {
    if (!committed && !path.empty())
      ::unlink(path.c_str());
  }
};

void writeAll(int fd, const Piece &piece, const std::string &what,
              const std::string &path) {
  const char *data = static_cast<const char *>(piece.data);
  size_t left = piece.size;
  while (left > 0) {
    ssize_t written = ::write(fd, data, left);
    if (written < 0 && errno == EINTR)
      continue;
    if (written < 0)
      fail(MOE_STATUS_IO_ERROR, "cannot write {} '{}': {}", what, path,
           errnoMessage(errno));
    data += written;
    left -= static_cast<size_t>(written);
  }
}

} // namespace

void writeFileAtomically(const std::string &path,
                         const std::vector<Piece> &pieces,
                         const std::string &what) {
  size_t slash = path.rfind('/');
  std::string directory = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base.empty())
    fail(MOE_STATUS_INVALID_ARGUMENT, "{} path '{}' names no file", what, path);

  static std::atomic<uint64_t> counter{0};
  TemporaryFile temporary;
  FileDescriptor fd;
  for (int attempt = 0; fd.get() < 0; ++attempt) {
    temporary.path = fmt::format(
        "{}/.{}.tmp.{}.{}.{}", directory, base, getpid(), counter++,
        std::chrono::steady_clock::now().time_since_epoch().count());
    // 0666: the final file gets the usual umask-derived permissions.
    fd = FileDescriptor(::open(temporary.path.c_str(),
                               O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666));
    if (fd.get() < 0 && (errno != EEXIST || attempt > 100)) {
      int err = errno;
      temporary.path.clear();
      fail(MOE_STATUS_IO_ERROR,
           "cannot write {} '{}': cannot create a file "
           "in '{}': {}",
           what, path, directory, errnoMessage(err));
    }
  }
  for (const Piece &piece : pieces)
    writeAll(fd.get(), piece, what, path);
  if (fsync(fd.get()) != 0)
    fail(MOE_STATUS_IO_ERROR, "cannot write {} '{}': fsync: {}", what, path,
         errnoMessage(errno));
  if (int err = fd.close())
    fail(MOE_STATUS_IO_ERROR, "cannot write {} '{}': close: {}", what, path,
         errnoMessage(err));
  if (::rename(temporary.path.c_str(), path.c_str()) != 0)
    fail(MOE_STATUS_IO_ERROR, "cannot write {} '{}': rename: {}", what, path,
         errnoMessage(errno));
  temporary.committed = true;
  // Make the rename itself durable. Some file systems cannot fsync a
  // directory (EINVAL); the data is in place either way.
  FileDescriptor dir(
      ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() >= 0 && fsync(dir.get()) != 0 && errno != EINVAL)
    fail(MOE_STATUS_IO_ERROR, "wrote {} '{}' but cannot sync '{}': {}", what,
         path, directory, errnoMessage(errno));
}

} // namespace moert::detail
