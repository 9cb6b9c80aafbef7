// Out of memory anywhere in a forward pass (including inside OpenMP regions, where an escaping exception would
// terminate the process) reaches the caller as std::bad_alloc and poisons the sequence state. The test binary
// replaces the global operator new so that the k-th allocation fails, for every k a prefill makes.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "sala/model/model.h"
#include "sala/model/presets.h"
#include "sala/runtime/generate.h"

namespace {
std::atomic<long> g_countdown{-1};  // >= 0: the allocation that finds 0 fails (once)
}  // namespace

// GCC pairs the builtin new with these free() calls and warns; the replacement new above them uses malloc.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  if (g_countdown.load(std::memory_order_relaxed) >= 0 && g_countdown.fetch_sub(1) == 0) throw std::bad_alloc();
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return ::operator new(n); }
// The nothrow forms too, so every allocation the sanitizers see is paired with the delete below.
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return ::operator new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return ::operator new(n, std::nothrow); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

using namespace sala;

TEST(AllocFailure, EveryAllocationOfAPrefillFailsCleanly) {
  // 200 tokens: past sala-tiny's dense_len (128), so block selection runs too; big enough that the attention and
  // selection loops run as parallel regions.
  const ModelConfig c = preset_config("sala-tiny");
  const Model m(c, random_weights(c, 9));
  std::vector<int32_t> ids(200);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(3 + (i * 37) % 500);
  GenerateOptions o;
  o.max_new_tokens = 2;
  long failures = 0;
#ifdef NDEBUG
  const long dense_until = 400, stride = 7;  // every allocation early on, then a stride (the test stays fast)
#else
  const long dense_until = 0, stride = 31;  // the sanitizer build is ~50x slower
#endif
  for (long k = 0;; k += (k < dense_until ? 1 : stride)) {
    SequenceState st = m.new_state();
    bool threw = false;
    g_countdown.store(k);
    try {
      generate(m, st, ids, o);
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    const bool armed = g_countdown.exchange(-1) >= 0;  // still armed: the run made fewer than k + 1 allocations
    if (armed) {
      EXPECT_FALSE(threw);
      break;
    }
    ASSERT_TRUE(threw) << "allocation " << k << " failed but no bad_alloc reached the caller";
    ++failures;
    // A call that failed half-way marks the state; one that failed between calls leaves a state that still works.
    if (!st.poisoned && st.pos > 0 && st.pos < st.max_len) {
      EXPECT_NO_THROW(m.decode(5, st)) << "allocation " << k;
    }
  }
  EXPECT_GT(failures, 50);
}
