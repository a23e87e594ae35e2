#include "apps/io/architecture.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "apps/io/atomic_file.hpp"
#include "runtime/error.hpp"

extern char** environ;

namespace mnist {

namespace {

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string quoted_id(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string shape(int n) { return "(None, " + std::to_string(n) + ")"; }

std::string node(const std::string& name, const std::string& type, int in, int out,
                 const std::string& activation) {
  std::string t = "  " + quoted_id(name) + " [label=<\n";
  t += "    <table border=\"0\" cellborder=\"1\" cellspacing=\"0\" cellpadding=\"6\">\n";
  t += "      <tr><td colspan=\"2\" bgcolor=\"#d9e7f5\"><b>" + html_escape(name) + "</b> (" + html_escape(type) +
       ")</td></tr>\n";
  t += "      <tr><td>Input shape</td><td>Output shape</td></tr>\n";
  t += "      <tr><td>" + shape(in) + "</td><td>" + shape(out) + "</td></tr>\n";
  if (!activation.empty())
    t += "      <tr><td colspan=\"2\">Activation: " + html_escape(activation) + "</td></tr>\n";
  t += "    </table>>];\n";
  return t;
}

// Runs argv (searched on PATH) with stdin from /dev/null; its stdout and stderr are captured.
// Returns "" on exit status 0, else why it failed. Kills it (by its pid) after `limit_s`.
std::string run_capture(const std::vector<std::string>& argv, std::string& out, std::string& err,
                        int limit_s) {
  int po[2], pe[2];
  if (::pipe2(po, O_CLOEXEC) != 0) return cat("pipe failed (", std::strerror(errno), ")");
  if (::pipe2(pe, O_CLOEXEC) != 0) {
    const int e = errno;
    ::close(po[0]), ::close(po[1]);
    return cat("pipe failed (", std::strerror(e), ")");
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, po[1], 1);
  posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(po[1]);
  ::close(pe[1]);
  if (rc != 0) {
    ::close(po[0]), ::close(pe[0]);
    if (rc == ENOENT) return cat("'", argv[0], "' not found on PATH");
    return cat("cannot start '", argv[0], "' (", std::strerror(rc), ")");
  }

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(limit_s);
  pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
  std::string* sinks[2] = {&out, &err};
  int open_fds = 2;
  bool timed_out = false;
  char buf[65536];
  while (open_fds > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    const int n = ::poll(fds, 2, int(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t r = ::read(fds[i].fd, buf, sizeof buf);
      if (r > 0) {
        sinks[i]->append(buf, std::size_t(r));
      } else if (r == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (auto& f : fds)
    if (f.fd >= 0) ::close(f.fd);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) return cat("'", argv[0], "' did not finish within ", limit_s, " s (killed)");
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
  if (WIFEXITED(status)) return cat("'", argv[0], "' exited with status ", WEXITSTATUS(status));
  return cat("'", argv[0], "' was killed by signal ", WTERMSIG(status));
}

std::string first_line(const std::string& s) {
  const std::size_t nl = s.find('\n');
  return s.substr(0, nl == std::string::npos ? s.size() : nl);
}

}  // namespace

std::string architecture_dot(const ModelSpec& spec, const std::string& model_name) {
  std::string t = "digraph " + quoted_id(model_name) + " {\n";
  t += "  graph [rankdir=TB, label=<<b>" + html_escape(model_name) +
       "</b>>, labelloc=t, fontname=\"Helvetica\", fontsize=16, nodesep=0.4, ranksep=0.35];\n";
  t += "  node [shape=plaintext, fontname=\"Helvetica\", fontsize=12];\n";
  t += "  edge [arrowsize=0.8];\n";
  t += node("input_layer", "InputLayer", spec.input, spec.input, "");
  std::string prev = "input_layer";
  std::string edges;
  int in = spec.input;
  const auto layers = layer_list(spec);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const LayerInfo& L = layers[i];
    std::string act;
    if (L.type == "Dense") act = i + 1 == layers.size() ? "softmax" : "relu";
    t += node(L.name, L.type, in, L.width, act);
    edges += "  " + quoted_id(prev) + " -> " + quoted_id(L.name) + ";\n";
    prev = L.name;
    in = L.width;
  }
  return t + edges + "}\n";
}

ArchitectureFiles write_architecture(const std::string& out_dir, const ModelSpec& spec,
                                     const std::string& model_name) {
  ArchitectureFiles files;
  const std::string base = (out_dir.empty() ? std::string(".") : out_dir) + "/model";
  files.dot = base + ".dot";
  write_file_atomic(files.dot, architecture_dot(spec, model_name));
  for (const char* fmt : {"svg", "png"}) {
    const std::string target = base + "." + fmt;
    std::string out, err;
    const std::string why = run_capture({"dot", std::string("-T") + fmt, files.dot}, out, err, 60);
    if (!why.empty() || out.empty()) {
      std::string w = target + " not rendered: " + (why.empty() ? "dot produced no output" : why);
      if (!err.empty()) w += ": " + first_line(err);
      if (why.find("not found") != std::string::npos) w += " (install the Debian package graphviz)";
      files.warnings.push_back(w);
      continue;
    }
    try {
      write_file_atomic(target, out);
      files.rendered.push_back(target);
    } catch (const Error& e) {
      files.warnings.push_back(target + " not written: " + e.what());
    }
  }
  return files;
}

}  // namespace mnist
