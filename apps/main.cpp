// mnist_cuda: train, evaluate and predict with the MNIST MLP on the GPU engine or the CPU path.
// Every error becomes one line on stderr and a non-zero exit code (2: bad input or flags, 1: other).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

#include "apps/pipeline/app.hpp"
#include "runtime/error.hpp"

namespace {

void add_common(CLI::App& app, mnist::AppOptions& o) {
  app.add_option("--hidden", o.hidden, "hidden widths, comma separated")->capture_default_str();
  app.add_option("--dropout", o.dropout, "dropout rate after each hidden layer, in [0,1)")->capture_default_str();
  app.add_option("--device", o.device, "auto | cpu | cuda")->capture_default_str();
  app.add_option("--gemm", o.gemm, "CUDA GEMMs: native (hand-written) | cublas")->capture_default_str();
  app.add_option("--kernels", o.kernels, "CUDA training step: fused (one persistent kernel) | graph (separate kernels)")
      ->capture_default_str();
  app.add_option("--precision", o.precision, "GEMM inputs: fp32 | tf32 | bf16 (tensor cores)")->capture_default_str();
  app.add_option("--graph-steps", o.graph_steps, "CUDA: training steps captured in one graph replay (1..1000)")
      ->capture_default_str();
  app.add_option("--dataset", o.dataset, "mnist | fashion")->capture_default_str();
  app.add_option("--data", o.data_dir, "directory of the IDX files (default data/<dataset>)");
  app.add_option("--batch-size", o.batch_size, "examples per step")->capture_default_str();
  app.add_option("--seed", o.seed, "seed of init, dropout, shuffle and random split")->capture_default_str();
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)")->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  mnist::AppOptions o;
  CLI::App app{"mnist_cuda: the MNIST MLP (784-128-64-10) trained with hand-written CUDA kernels, or on the CPU"};
  app.set_version_flag("--version", "mnist_cuda 0.1.0");
  add_common(app, o);
  app.add_option("--epochs", o.epochs, "maximum number of epochs")->capture_default_str();
  app.add_option("--lr", o.lr, "Adam learning rate")->capture_default_str();
  app.add_option("--val-split", o.val_split, "fraction of the training set held out, in (0,1)")->capture_default_str();
  app.add_option("--split", o.split, "keras (last fraction) | random (seeded, as torch random_split)")->capture_default_str();
  app.add_option("--patience", o.patience, "EarlyStopping patience on val_loss")->capture_default_str();
  app.add_option("--lr-factor", o.lr_factor, "ReduceLROnPlateau factor")->capture_default_str();
  app.add_option("--lr-patience", o.lr_patience, "ReduceLROnPlateau patience")->capture_default_str();
  app.add_option("--min-lr", o.min_lr, "ReduceLROnPlateau minimum learning rate")->capture_default_str();
  app.add_option("--init", o.init, "keras (Glorot uniform, zero bias) | torch (nn.Linear default)")->capture_default_str();
  app.add_option("--out", o.out_dir, "output directory (checkpoint, history, logs, plots)")->capture_default_str();
  app.add_flag("--quiet", o.quiet, "print only the final results");
  app.add_flag("--resume", o.resume, "continue the run saved in <out>/resume.safetensors");

  CLI::App* evaluate = app.add_subcommand("evaluate", "test loss/accuracy of a checkpoint");
  add_common(*evaluate, o);
  evaluate->add_option("--checkpoint", o.checkpoint, "safetensors checkpoint")->required();

  CLI::App* predict = app.add_subcommand("predict", "class and confidence for PNG images");
  add_common(*predict, o);
  predict->add_option("--checkpoint", o.checkpoint, "safetensors checkpoint")->required();
  predict->add_option("images", o.images, "PNG files")->required();

  CLI::App* compare = app.add_subcommand("compare", "train on every backend (GPU, CPU, PyTorch) and compare");
  add_common(*compare, o);
  compare->add_option("--epochs", o.epochs, "maximum number of epochs")->capture_default_str();
  compare->add_option("--lr", o.lr, "Adam learning rate")->capture_default_str();
  compare->add_option("--val-split", o.val_split, "validation fraction")->capture_default_str();
  compare->add_option("--split", o.split, "keras | random")->capture_default_str();
  compare->add_option("--patience", o.patience, "EarlyStopping patience")->capture_default_str();
  compare->add_option("--out", o.out_dir, "where compare.md/json go")->capture_default_str();
  compare->add_option("--python", o.python, "python interpreter with torch");
  compare->add_option("--pytorch-script", o.pytorch_script, "the PyTorch peer (profiling/pytorch_mnist.py)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (*evaluate) return mnist::run_evaluate(o, std::cout);
    if (*predict) return mnist::run_predict(o, std::cout);
    if (*compare) return mnist::run_compare(o, std::cout);
    return mnist::run_train(o, std::cout);
  } catch (const mnist::InputError& e) {
    std::cerr << "mnist_cuda: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "mnist_cuda: error: " << e.what() << "\n";
    return 1;
  }
}
