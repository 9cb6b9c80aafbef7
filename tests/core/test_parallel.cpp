// ParallelErrors: an exception thrown inside an OpenMP loop reaches the caller instead of terminating the process.
#include <gtest/gtest.h>
#include <omp.h>

#include <atomic>
#include <new>

#include "sala/core/error.h"
#include "sala/core/parallel.h"

using namespace sala;

TEST(ParallelErrors, CarriesTheExceptionOutOfTheRegion) {
  ParallelErrors errs;
  std::atomic<int> ran{0};
#pragma omp parallel for schedule(dynamic, 1) num_threads(4)
  for (int i = 0; i < 1000; ++i)
    errs.run([&] {
      ++ran;
      if (i == 37) fail("item {} is bad", i);
    });
  EXPECT_TRUE(errs.failed());
  try {
    errs.rethrow();
    ADD_FAILURE() << "no rethrow";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "item 37 is bad");
  }
  EXPECT_GE(ran.load(), 38);  // at least the iterations up to the failure ran
}

TEST(ParallelErrors, KeepsTheTypeAndOnlyOneOfManyFailures) {
  ParallelErrors errs;
#pragma omp parallel for num_threads(4)
  for (int i = 0; i < 64; ++i) errs.run([&] { throw std::bad_alloc(); });
  EXPECT_THROW(errs.rethrow(), std::bad_alloc);
  ParallelErrors none;
#pragma omp parallel for num_threads(4)
  for (int i = 0; i < 64; ++i) none.run([] {});
  EXPECT_FALSE(none.failed());
  EXPECT_NO_THROW(none.rethrow());
}
