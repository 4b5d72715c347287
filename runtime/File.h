//===- File.h - Reading, mapping and atomically writing files -------------===//
#ifndef MOERT_RUNTIME_FILE_H
#define MOERT_RUNTIME_FILE_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace moert::detail {

/// An open file descriptor, closed on destruction.
class FileDescriptor {
public:
  explicit FileDescriptor(int fd = -1) : fd(fd) {}
  FileDescriptor(FileDescriptor &&other) : fd(other.fd) { other.fd = -1; }
  FileDescriptor &operator=(FileDescriptor &&other);
  FileDescriptor(const FileDescriptor &) = delete;
  FileDescriptor &operator=(const FileDescriptor &) = delete;
  ~FileDescriptor();
  int get() const { return fd; }
  /// Closes now, returning close()'s errno or 0.
  int close();

private:
  int fd;
};

/// Opens a regular file for reading; fails with NOT_FOUND, IO_ERROR or
/// INVALID_ARGUMENT (a directory, a FIFO) naming `what` and `path`.
/// `*size` receives its size.
FileDescriptor openRegularFile(const std::string &path, const std::string &what,
                               uint64_t *size);

/// A whole file mapped read-only.
class MappedFile {
public:
  MappedFile(const std::string &path, const std::string &what);
  MappedFile(const MappedFile &) = delete;
  MappedFile &operator=(const MappedFile &) = delete;
  ~MappedFile();
  const uint8_t *data() const { return bytes; }
  size_t size() const { return length; }

private:
  const uint8_t *bytes = nullptr;
  size_t length = 0;
};

struct Piece {
  const void *data;
  size_t size;
};

/// Writes the concatenation of `pieces` to `path` so that `path` is either
/// left as it was or holds the complete new contents: writes a temporary file
/// in the same directory, fsyncs it, renames it over `path` and fsyncs the
/// directory. The temporary file never outlives a failure.
void writeFileAtomically(const std::string &path,
                         const std::vector<Piece> &pieces,
                         const std::string &what);

} // namespace moert::detail

#endif // MOERT_RUNTIME_FILE_H
