// mnist_cuda: train, evaluate and predict with the MNIST MLP on the GPU engine or the CPU path.
// Every error becomes one line on stderr, "mnist_cuda: error: ...", and an exit code: 2 for bad
// input or flags (a usage error names the flag), 1 for other failures, 130 after SIGINT/SIGTERM.
#include <CLI/CLI.hpp>

#include <iostream>
#include <string>
#include <vector>

#include "apps/pipeline/app.hpp"
#include "runtime/error.hpp"

namespace {

// One line, whatever CLI11 or a library put in the message.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

int fail(const std::string& msg, int code) {
  std::cerr << "mnist_cuda: error: " << one_line(msg) << "\n";
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  mnist::AppOptions o;
  CLI::App app{"mnist_cuda: the MNIST MLP (784-128-64-10) trained with hand-written CUDA kernels, or on the CPU"};
  app.set_version_flag("--version", "mnist_cuda 0.1.0");
  try {
    mnist::add_flags(app, o);
    app.parse(argc, argv);
    // A subcommand runs with its own flags only: flags before its name would be silently ignored.
    if (o.command != mnist::Command::Train)
      for (const CLI::Option* opt : app.get_options())
        if (opt->count() > 0 && opt->get_name() != "--help" && opt->get_name() != "--version")
          return fail(opt->get_name() + " comes before '" + app.get_subcommands().front()->get_name() +
                          "': a subcommand's flags come after its name (mnist_cuda " +
                          app.get_subcommands().front()->get_name() + " --help lists them)",
                      2);
  } catch (const CLI::ExtrasError&) {
    // CLI11 lists the extras in reverse; say which command got them, in order.
    std::string extras, where = "mnist_cuda";
    for (const CLI::App* sub : app.get_subcommands()) where = sub->get_name();
    for (const CLI::App* a : [&] {
           std::vector<const CLI::App*> apps{&app};
           for (const CLI::App* sub : app.get_subcommands()) apps.push_back(sub);
           return apps;
         }())
      for (const std::string& x : a->remaining()) extras += " " + x;
    return fail(where + " does not take:" + extras + " (mnist_cuda --help lists the flags)", 2);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // CLI11's words for the two mistakes it catches itself, in the project's (the flag first).
    std::string what = e.what();
    const std::string::size_type at_most = what.find(": At Most 1 required");
    if (dynamic_cast<const CLI::ArgumentMismatch*>(&e) && at_most != std::string::npos)
      what = what.substr(0, at_most) + ": given more than once (give each flag once)";
    const std::string convert = "Could not convert: ";
    if (dynamic_cast<const CLI::ConversionError*>(&e) && what.rfind(convert, 0) == 0) {
      const std::string rest = what.substr(convert.size()), flag = rest.substr(0, rest.find(" = "));
      what = flag + " takes no value, got '" + rest.substr(std::min(rest.size(), flag.size() + 3)) + "'";
    }
    if (dynamic_cast<const CLI::RequiredError*>(&e) && what.rfind("images is required", 0) == 0)
      what = "predict: give at least one PNG file (mnist_cuda predict --checkpoint F a.png b.png ...)";
    return fail(what + " (mnist_cuda --help lists the flags)", 2);
  } catch (const mnist::InputError& e) {  // --hidden, parsed in its callback
    return fail(e.what(), 2);
  }
  try {
    switch (o.command) {
      case mnist::Command::Evaluate: return mnist::run_evaluate(o, std::cout);
      case mnist::Command::Predict: return mnist::run_predict(o, std::cout);
      case mnist::Command::Compare: return mnist::run_compare(o, std::cout);
      case mnist::Command::Train: break;
    }
    return mnist::run_train(o, std::cout);
  } catch (const mnist::InputError& e) {
    return fail(e.what(), 2);
  } catch (const std::bad_alloc&) {
    return fail("out of host memory: the model (--hidden) or the batch (--batch-size) is too large for this machine", 1);
  } catch (const std::exception& e) {
    return fail(e.what(), 1);
  }
}
