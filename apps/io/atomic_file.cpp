#include "apps/io/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "runtime/error.hpp"

namespace mnist {

void write_file_atomic(const std::string& path, const std::string& bytes) {
  // A new file, never an existing one or a link's target: whatever holds the name already (a
  // temporary file a killed run with this pid left, or a planted link) is unlinked, which removes
  // the link, never what it points to, and the file is created afresh.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  constexpr int kFlags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  int fd = ::open(tmp.c_str(), kFlags, 0644);
  if (fd < 0 && errno == EEXIST && ::unlink(tmp.c_str()) == 0) fd = ::open(tmp.c_str(), kFlags, 0644);
  if (fd < 0) throw Error(cat(path, ": cannot create temporary file (", std::strerror(errno), ")"));
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw Error(cat(path, ": write failed (", std::strerror(e), ")"));
    }
    done += std::size_t(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw Error(cat(path, ": flush failed (", std::strerror(e), ")"));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    throw Error(cat(path, ": rename failed (", std::strerror(e), ")"));
  }
  const std::size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

std::string read_file(const std::string& path) {
  // Only regular files: a FIFO would block forever, /dev/zero never ends, a directory reads empty.
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) throw InputError(cat(path, ": cannot open (", std::strerror(errno), ")"));
  if (S_ISDIR(st.st_mode)) throw InputError(cat(path, ": is a directory, not a file"));
  if (!S_ISREG(st.st_mode)) throw InputError(cat(path, ": not a regular file"));
  constexpr off_t kMaxBytes = off_t(1) << 31;
  if (st.st_size > kMaxBytes) throw InputError(cat(path, ": ", st.st_size, " bytes is too large (at most 2 GiB)"));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(cat(path, ": cannot open (", std::strerror(errno), ")"));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw InputError(cat(path, ": read failed"));
  return ss.str();
}

void make_dirs(const std::string& dir) {
  if (dir.empty()) return;
  std::string cur;
  std::size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    cur = dir.substr(0, pos);
    if (cur.empty()) continue;
    if (::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST)
      throw Error(cat(dir, ": cannot create directory (", std::strerror(errno), ")"));
  }
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) throw Error(cat(dir, ": is not a directory"));
}

}  // namespace mnist
