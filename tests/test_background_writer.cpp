// BackgroundWriter (apps/io/background_writer.hpp): per-path order, coalescing of pending jobs,
// the order of jobs queued together across coalescing, flush() waiting for the disk, a failed
// write surfacing as the very error a synchronous write gives, and the destructor's flush.
//
// The worker is held inside a job by a Gate, so that what is pending at each moment is known.
#include <doctest/doctest.h>

#include <chrono>
#include <condition_variable>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "apps/io/atomic_file.hpp"
#include "apps/io/background_writer.hpp"
#include "helpers.hpp"
#include "runtime/error.hpp"

namespace mnist {
namespace {

// Blocks the worker inside a producer until open(); entered() waits until the worker is there.
class Gate {
 public:
  void wait_inside() {
    std::unique_lock<std::mutex> lock(mu_);
    inside_ = true;
    cv_.notify_all();
    cv_.wait(lock, [this] { return open_; });
  }
  void entered() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return inside_; });
  }
  void open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool inside_ = false, open_ = false;
};

// The order in which the worker produced the jobs' bytes (= the order of the writes: one thread).
class Order {
 public:
  BackgroundWriter::Producer job(const std::string& label) {
    return [this, label] {
      std::lock_guard<std::mutex> lock(mu_);
      seen_.push_back(label);
      return label;
    };
  }
  std::vector<std::string> seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }

 private:
  std::mutex mu_;
  std::vector<std::string> seen_;
};

}  // namespace

TEST_CASE("BackgroundWriter: a pending job is replaced by a newer one for its path, never overtaking the one in progress") {
  const test::TempDir tmp("bgw");
  const std::string a = tmp.path() + "/a", b = tmp.path() + "/b";
  Gate gate;
  Order order;
  BackgroundWriter w;
  w.submit(a, [&] {
    gate.wait_inside();
    return std::string("a1");
  });
  gate.entered();  // a1 is being written; everything below is pending behind it
  w.submit(a, order.job("a2"));
  w.submit(b, order.job("b1"));
  w.submit(a, order.job("a3"));  // replaces a2, queued after b1
  CHECK(w.coalesced() == 1);
  gate.open();
  w.flush();
  CHECK(order.seen() == std::vector<std::string>{"b1", "a3"});
  CHECK(read_file(a) == "a3");  // a1, in progress when a3 came, did not land after it
  CHECK(read_file(b) == "b1");
  CHECK(w.written() == 3);
}

TEST_CASE("BackgroundWriter: jobs queued together stay in their order when they replace pending ones") {
  // The trainer's pattern: [checkpoint, resume state] per epoch; the resume state names the
  // checkpoint as the best, so it must never be on disk before that checkpoint.
  const test::TempDir tmp("bgw");
  const std::string best = tmp.path() + "/best", resume = tmp.path() + "/resume";
  const std::string tb = tmp.path() + "/tb";
  Gate gate;
  Order order;
  BackgroundWriter w;
  w.submit(tb, [&] {
    gate.wait_inside();
    return std::string("tb0");
  });
  gate.entered();
  w.submit({{best, order.job("best1")}, {resume, order.job("resume1")}});
  w.submit(tb, order.job("tb2"));
  w.submit({{best, order.job("best2")}, {resume, order.job("resume2")}});  // epoch 2 improved
  w.submit(tb, order.job("tb3"));
  w.submit({{resume, order.job("resume3")}});  // epoch 3 did not: best2 must land before resume3
  CHECK(w.coalesced() == 4);                    // best1, resume1, tb2, resume2
  gate.open();
  w.flush();
  CHECK(order.seen() == std::vector<std::string>{"best2", "tb3", "resume3"});
  CHECK(read_file(best) == "best2");
  CHECK(read_file(resume) == "resume3");
  CHECK(read_file(tb) == "tb3");
}

TEST_CASE("BackgroundWriter: without coalescing every job is written, in submission order") {
  const test::TempDir tmp("bgw");
  Order order;
  BackgroundWriter w;
  std::vector<std::string> expect;
  for (int i = 0; i < 50; ++i) {
    const std::string label = cat("f", i);
    w.submit(tmp.path() + "/" + label, order.job(label));
    expect.push_back(label);
  }
  w.flush();
  CHECK(order.seen() == expect);
  CHECK(w.written() == 50);
  for (const std::string& f : expect) CHECK(read_file(tmp.path() + "/" + f) == f);
}

TEST_CASE("BackgroundWriter: flush() returns only when the file is on disk") {
  const test::TempDir tmp("bgw");
  const std::string path = tmp.path() + "/slow";
  BackgroundWriter w;
  w.submit(path, [] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    return std::string("done");
  });
  w.flush();
  CHECK(read_file(path) == "done");
  w.submit_bytes(path, "again");
  w.flush();
  CHECK(read_file(path) == "again");
}

TEST_CASE("BackgroundWriter: a failed write throws the synchronous write's error at flush and every submit after") {
  const test::TempDir tmp("bgw");
  const std::string bad = tmp.path() + "/missing_dir/file";  // its directory does not exist
  const std::string good = tmp.path() + "/good";
  std::string sync_message;
  try {
    write_file_atomic(bad, "x");
    FAIL("no error writing into a missing directory");
  } catch (const InputError&) {
    FAIL("a write failure is not bad input (exit 1, not 2)");
  } catch (const Error& e) {
    sync_message = e.what();
  }
  REQUIRE(sync_message.find(bad) != std::string::npos);

  std::ostringstream captured;
  std::streambuf* old = std::cerr.rdbuf(captured.rdbuf());
  auto w = std::make_unique<BackgroundWriter>();
  w->submit({{bad, [] { return std::string("x"); }}, {good, [] { return std::string("g"); }}});
  std::string message;
  try {
    w->flush();
    FAIL("flush() hid the error");
  } catch (const InputError&) {
    FAIL("the error changed type");
  } catch (const Error& e) {
    message = e.what();
  }
  CHECK(message == sync_message);
  CHECK_FALSE(std::filesystem::exists(good));  // queued behind the failure: dropped, as a sync writer stops
  CHECK_THROWS_WITH_AS(w->submit_bytes(good, "g"), sync_message.c_str(), Error);
  CHECK_THROWS_WITH_AS(w->flush(), sync_message.c_str(), Error);
  w.reset();  // the error was thrown to a caller: the destructor does not print it a second time
  std::cerr.rdbuf(old);
  CHECK_FALSE(std::filesystem::exists(good));
  CHECK(captured.str().empty());
}

TEST_CASE("BackgroundWriter: the producer's own exception surfaces unchanged") {
  const test::TempDir tmp("bgw");
  BackgroundWriter w;
  w.submit(tmp.path() + "/f", []() -> std::string { throw InputError("serialisation failed"); });
  CHECK_THROWS_WITH_AS(w.flush(), "serialisation failed", InputError);
  CHECK_FALSE(std::filesystem::exists(tmp.path() + "/f"));
}

TEST_CASE("BackgroundWriter: the destructor writes what is pending, and reports an error on stderr without throwing") {
  const test::TempDir tmp("bgw");
  const std::string path = tmp.path() + "/last";
  {
    BackgroundWriter w;
    w.submit(path, [] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      return std::string("last");
    });
  }
  CHECK(read_file(path) == "last");

  const std::string bad = tmp.path() + "/missing_dir/file";
  std::ostringstream captured;
  std::streambuf* old = std::cerr.rdbuf(captured.rdbuf());
  {
    BackgroundWriter w;
    w.submit_bytes(bad, "x");
  }  // must not throw
  std::cerr.rdbuf(old);
  CHECK(captured.str().rfind("mnist_cuda: error: " + bad + ": cannot create temporary file", 0) == 0);
}

}  // namespace mnist

namespace mnist {

TEST_CASE("BackgroundWriter: under a stream of epochs, no file goes back in time and no resume state precedes its checkpoint") {
  // 400 "epochs" submitted as fast as possible: two TensorBoard files alone, then [checkpoint on
  // every 3rd epoch, resume state] together, as fit() does. Whatever the worker skips, each file's
  // writes must have increasing epochs, each resume state must be written after the checkpoint it
  // names (or a newer one), and the last submission of each path must be what stays on disk.
  const test::TempDir tmp("bgw");
  const std::string best = tmp.path() + "/best", resume = tmp.path() + "/resume";
  const std::string tb1 = tmp.path() + "/tb1", tb2 = tmp.path() + "/tb2";
  struct Write {
    std::string path;
    int epoch, names_best;
  };
  std::mutex mu;
  std::vector<Write> writes;
  auto job = [&](const std::string& path, int epoch, int names_best) -> BackgroundWriter::Producer {
    return [&, path, epoch, names_best] {
      std::lock_guard<std::mutex> lock(mu);
      writes.push_back({path, epoch, names_best});
      return cat(epoch);
    };
  };
  BackgroundWriter w;
  int last_best = -1;
  for (int e = 0; e < 400; ++e) {
    w.submit(tb1, job(tb1, e, -1));
    w.submit(tb2, job(tb2, e, -1));
    std::vector<BackgroundWriter::Job> jobs;
    if (e % 3 == 0) {
      last_best = e;
      jobs.push_back({best, job(best, e, -1)});
    }
    jobs.push_back({resume, job(resume, e, last_best)});
    w.submit(std::move(jobs));
  }
  w.flush();
  std::map<std::string, int> newest{{best, -1}, {resume, -1}, {tb1, -1}, {tb2, -1}};
  long bad_order = 0, bad_dependency = 0;
  for (const Write& x : writes) {
    if (x.epoch <= newest[x.path]) ++bad_order;
    newest[x.path] = x.epoch;
    if (x.path == resume && newest[best] < x.names_best) ++bad_dependency;
  }
  CHECK(bad_order == 0);
  CHECK(bad_dependency == 0);
  CHECK(read_file(best) == cat(last_best));
  CHECK(read_file(resume) == "399");
  CHECK(read_file(tb1) == "399");
  CHECK(read_file(tb2) == "399");
  CHECK(w.written() + w.coalesced() == 400 * 3 + 134);  // every job written or replaced
  MESSAGE("written ", w.written(), ", coalesced ", w.coalesced());
}

}  // namespace mnist
