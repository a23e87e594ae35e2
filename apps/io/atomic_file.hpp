// Crash-safe file replacement: every file mnist_cuda writes goes through write_file_atomic, so a
// kill at any moment leaves either the previous file or the complete new one, never a mix.
#pragma once

#include <string>

namespace mnist {

// Writes `bytes` to "<path>.tmp.<pid>", fsyncs it, renames it over `path` and fsyncs the
// directory. Throws Error naming the path on any failure (the temporary file is removed).
void write_file_atomic(const std::string& path, const std::string& bytes);

// Reads a whole file; throws InputError naming the path when it cannot.
std::string read_file(const std::string& path);

// mkdir -p; throws Error naming the directory when it cannot be created.
void make_dirs(const std::string& dir);

}  // namespace mnist
