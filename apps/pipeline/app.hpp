// The mnist_cuda commands, one file each (train.cpp, evaluate.cpp, predict.cpp, compare.cpp) over
// the shared core (core.hpp), independent of the CLI parser: typed options in, files and lines out.
// Each returns the exit code (0, or 130 after SIGINT/SIGTERM) or throws: InputError for bad input
// (exit 2), any other Error for other failures (exit 1).
#pragma once

#include <iosfwd>
#include <map>
#include <string>

#include "apps/pipeline/options.hpp"

namespace mnist {

int run_train(const AppOptions& o, std::ostream& log);
int run_evaluate(const AppOptions& o, std::ostream& log);
int run_predict(const AppOptions& o, std::ostream& log);
// The tutorial's Part 3, measured: the same model and seed on every available backend (CUDA
// engine, CPU path, PyTorch through profiling/pytorch_mnist.py when torch is importable), one
// table of test accuracy, seconds per epoch, total time and parameters; <out>/compare.{md,json}.
int run_compare(const AppOptions& o, std::ostream& log);

// The resume rule (train.cpp): the flags and data a resumed run must share with the interrupted one,
// as saved in its resume checkpoint (`backend`: the engine used, cpu or cuda; `fingerprint`: the
// data's), and what differs between a saved set and this run's ("; key was X, now Y" per flag,
// empty if none; a flag the file predates counts as what runs before it ran).
std::map<std::string, std::string> run_config(const AppOptions& o, const std::string& backend,
                                              const std::string& fingerprint);
std::string resume_flag_diff(std::map<std::string, std::string> saved, const std::map<std::string, std::string>& config);

}  // namespace mnist
