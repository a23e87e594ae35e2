#include "apps/io/background_writer.hpp"

#include <pthread.h>
#include <signal.h>

#include <iostream>

#include "apps/io/atomic_file.hpp"

namespace mnist {

BackgroundWriter::BackgroundWriter() : worker_([this] { run(); }) {}

BackgroundWriter::~BackgroundWriter() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    idle_cv_.wait(lock, [this] { return queue_.empty() && !busy_; });
    // An error already thrown by submit()/flush() has been reported by whoever caught it.
    if (error_ && !reported_) {
      try {
        std::rethrow_exception(error_);
      } catch (const std::exception& e) {
        std::cerr << "mnist_cuda: error: " << e.what() << "\n";
      } catch (...) {
        std::cerr << "mnist_cuda: error: a background write failed\n";
      }
    }
    stop_ = true;
  }
  work_cv_.notify_one();
  worker_.join();
}

void BackgroundWriter::rethrow_locked() {
  if (!error_) return;
  reported_ = true;
  std::rethrow_exception(error_);
}

void BackgroundWriter::submit(std::vector<Job> jobs) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    rethrow_locked();
    for (Job& job : jobs) {
      // Only pending jobs are in the queue (the one being written was taken out of it), and a
      // path has at most one pending job, so one look suffices.
      for (auto it = queue_.begin(); it != queue_.end(); ++it)
        if (it->path == job.path) {
          queue_.erase(it);
          ++coalesced_;
          break;
        }
      queue_.push_back(std::move(job));
    }
  }
  work_cv_.notify_one();
}

void BackgroundWriter::submit(const std::string& path, Producer bytes) {
  std::vector<Job> jobs;
  jobs.push_back({path, std::move(bytes)});
  submit(std::move(jobs));
}

void BackgroundWriter::submit_bytes(const std::string& path, std::string bytes) {
  submit(path, [b = std::move(bytes)] { return b; });
}

void BackgroundWriter::flush() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [this] { return queue_.empty() && !busy_; });
  rethrow_locked();
}

long BackgroundWriter::written() const {
  std::lock_guard<std::mutex> lock(mu_);
  return written_;
}

long BackgroundWriter::coalesced() const {
  std::lock_guard<std::mutex> lock(mu_);
  return coalesced_;
}

void BackgroundWriter::run() {
  // SIGINT/SIGTERM belong to the training thread (its handler asks fit() to stop); the worker
  // never takes them, so its fsync/rename are not interrupted.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_ with nothing left (the destructor flushed first)
    Job job = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    std::exception_ptr failed;
    try {
      write_file_atomic(job.path, job.bytes());
    } catch (...) {
      failed = std::current_exception();
    }
    job = Job{};  // free the job's captured state outside the lock
    lock.lock();
    busy_ = false;
    if (failed) {
      if (!error_) error_ = failed;
      queue_.clear();  // a synchronous writer would have stopped at the failing write
    } else {
      ++written_;
    }
    if (error_) queue_.clear();
    if (queue_.empty()) idle_cv_.notify_all();
  }
}

}  // namespace mnist
