// CUDA ops against the CPU ops (themselves tested against the float64 reference), on random inputs.
#include <gtest/gtest.h>

#include <vector>

#include "sala/backend/cpu/lightning.h"
#include "sala/backend/cpu/ops.h"
#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/ops.h"
#include "sala/model/model.h"
#include "test_util.h"

using namespace sala;

namespace {
struct DevBuf {
  float* p = nullptr;
  size_t n = 0;
  explicit DevBuf(const std::vector<float>& h) : n(h.size()) {
    SALA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(float)));
    SALA_CUDA_CHECK(cudaMemcpy(p, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  }
  ~DevBuf() { cudaFree(p); }
  std::vector<float> get() const {
    std::vector<float> h(n);
    SALA_CUDA_CHECK(cudaMemcpy(h.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost));
    return h;
  }
};
}  // namespace

TEST(CudaOps, RmsNormMatchesCpu) {
  for (int64_t n : {1, 128, 4096, 5000}) {
    const int64_t rows = 37;
    auto x = test::randn(size_t(rows * n), 1), w = test::randn(size_t(n), 2);
    std::vector<float> want(x.size());
    cpu::rmsnorm(want.data(), x.data(), w.data(), rows, n, 1e-6f);
    DevBuf dx(x), dw(w), dy(std::vector<float>(x.size()));
    cuda::rmsnorm(dy.p, dx.p, dw.p, rows, n, 1e-6f, nullptr);
    SALA_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_LT(test::rel_max_err(dy.get(), want), 1e-5) << "n=" << n;
  }
}

TEST(CudaOps, LightningDecodeMatchesCpuOverManySteps) {
  for (int64_t D : {16, 48, 128}) {
    const int64_t H = 32, steps = 50;
    std::vector<float> g;
    for (double s : alibi_slopes(H)) g.push_back(float(-s));
    std::vector<float> st_cpu = test::randn(size_t(H * D * D), 3, 0.1f);
    DevBuf dst(st_cpu), dg(g), dq(std::vector<float>(size_t(H * D))), dk(dq.get()), dv(dq.get()), dout(dq.get());
    const float scale = 1.0f / std::sqrt(float(D));
    for (int64_t t = 0; t < steps; ++t) {
      auto q = test::randn(size_t(H * D), 10 + uint64_t(t)), k = test::randn(size_t(H * D), 1000 + uint64_t(t)),
           v = test::randn(size_t(H * D), 2000 + uint64_t(t));
      std::vector<float> o(q.size());
      cpu::lightning_recurrent(o.data(), q.data(), k.data(), v.data(), st_cpu.data(), g.data(), scale, 1, H, D);
      SALA_CUDA_CHECK(cudaMemcpy(dq.p, q.data(), q.size() * 4, cudaMemcpyHostToDevice));
      SALA_CUDA_CHECK(cudaMemcpy(dk.p, k.data(), k.size() * 4, cudaMemcpyHostToDevice));
      SALA_CUDA_CHECK(cudaMemcpy(dv.p, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
      cuda::lightning_decode(dout.p, dq.p, dk.p, dv.p, dst.p, dg.p, scale, H, D, nullptr);
      SALA_CUDA_CHECK(cudaDeviceSynchronize());
      ASSERT_LT(test::rel_max_err(dout.get(), o), 1e-5) << "D=" << D << " step " << t;
    }
    EXPECT_LT(test::rel_max_err(dst.get(), st_cpu), 1e-5) << "D=" << D;
  }
}

TEST(CudaOps, ErrorsAreThrownNotIgnored) {
  void* p = nullptr;
  test::expect_error([&] { SALA_CUDA_CHECK(cudaMalloc(&p, size_t(1) << 60)); }, {"CUDA error", "cudaMalloc"});
}
