// Errors of mnist_cuda. Library code throws mnist::Error with a message that names the file, flag
// or call and what was wrong; only the app decides how to report it and which exit code to use.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace mnist {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Input that is not what it claims to be (data files, checkpoints, flags).
class InputError : public Error {
 public:
  using Error::Error;
};

// The GPU, its driver or one of its libraries failed.
class CudaError : public Error {
 public:
  using Error::Error;
};

namespace detail {
inline void append(std::ostringstream&) {}
template <class T, class... Rest>
void append(std::ostringstream& os, const T& v, const Rest&... rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

// Builds a message from streamable parts: cat("batch ", b, " > ", n).
template <class... Parts>
std::string cat(const Parts&... parts) {
  std::ostringstream os;
  detail::append(os, parts...);
  return os.str();
}

}  // namespace mnist

// Precondition check for library code: throws mnist::Error("<file>:<line>: <message>").
#define MNIST_CHECK(cond, ...)                                                              \
  do {                                                                                      \
    if (!(cond))                                                                            \
      throw ::mnist::Error(::mnist::cat(__FILE__, ":", __LINE__, ": ", __VA_ARGS__));       \
  } while (0)
