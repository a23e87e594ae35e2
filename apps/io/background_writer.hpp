// Durable writes off the training thread: one worker thread performs write_file_atomic (temporary
// file, fsync, rename, fsync of the directory) for jobs queued by submit(), so that the next epoch
// trains while the previous epoch's files (checkpoint, resume state, TensorBoard) reach the disk.
//
// Order. Jobs are written one at a time, in submission order, with one exception (coalescing):
// a job that is still pending when a newer job for the same path is submitted is dropped, and the
// newer one is queued at the end. So a job never overtakes an older job for its path, and when a
// job is written, every job submitted before it has been written or replaced by a newer job for
// its path. Jobs that one submit() call takes together are queued together: a file that depends
// on another (the resume state names the best checkpoint) is never on disk before the file it
// depends on, when both are submitted in one call with the dependency first.
//
// Durability is write_file_atomic's: a kill at any moment leaves every file either its previous
// complete version or a newer complete one (possibly older than the last submit: pending jobs die
// with the process). flush() waits until every job submitted before it is on disk.
//
// Errors. A failing job's exception (an Error naming the path, as write_file_atomic throws it) is
// kept and the jobs pending behind it are dropped (a synchronous writer would not have reached
// them); from then on submit() and flush() rethrow that exception (submit() queues nothing). The
// destructor flushes and reports on stderr ("mnist_cuda: error: ...") an error that it cannot throw
// and that no submit()/flush() has thrown yet.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace mnist {

class BackgroundWriter {
 public:
  // Produces the file's bytes; runs on the worker thread (serialisation leaves the caller too).
  // It must own what it reads (capture by value or move), since it runs later.
  using Producer = std::function<std::string()>;
  struct Job {
    std::string path;
    Producer bytes;
  };

  BackgroundWriter();
  ~BackgroundWriter();
  BackgroundWriter(const BackgroundWriter&) = delete;
  BackgroundWriter& operator=(const BackgroundWriter&) = delete;

  // Queues the jobs, in this order, as one unit (see Order above). Rethrows a previous job's error.
  void submit(std::vector<Job> jobs);
  void submit(const std::string& path, Producer bytes);
  void submit_bytes(const std::string& path, std::string bytes);

  // Waits until every job submitted so far is written (or dropped after an error), then
  // rethrows the first error, if any.
  void flush();

  // Counters, for tests and profiling: jobs written, and jobs dropped because a newer job for
  // their path replaced them.
  long written() const;
  long coalesced() const;

 private:
  void run();
  void rethrow_locked();

  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // the worker waits for jobs or the stop request
  std::condition_variable idle_cv_;  // flush() waits for an empty queue and an idle worker
  std::deque<Job> queue_;
  bool busy_ = false;  // the worker is writing a job taken from the queue
  bool stop_ = false;
  std::exception_ptr error_;
  bool reported_ = false;  // error_ was thrown to a caller at least once
  long written_ = 0, coalesced_ = 0;
  std::thread worker_;  // last: started once every other member exists
};

}  // namespace mnist
