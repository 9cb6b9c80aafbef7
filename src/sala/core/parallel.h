// ParallelErrors: carries an exception out of an OpenMP region. A C++ exception that leaves a parallel region (or
// skips a worksharing loop's barrier) terminates the process, so every loop body that can throw (allocation, a
// sala::fail) runs inside run(): the first exception is kept, later iterations are skipped, and rethrow() raises it on
// the calling thread once the region is over.
#pragma once
#include <atomic>
#include <exception>
#include <mutex>

namespace sala {

class ParallelErrors {
 public:
  template <class F>
  void run(F&& f) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      f();
    } catch (...) {
      std::lock_guard<std::mutex> lock(m_);
      if (!first_) first_ = std::current_exception();
      failed_.store(true, std::memory_order_relaxed);
    }
  }
  bool failed() const { return failed_.load(std::memory_order_relaxed); }
  void rethrow() {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::mutex m_;
  std::exception_ptr first_;
};

}  // namespace sala
