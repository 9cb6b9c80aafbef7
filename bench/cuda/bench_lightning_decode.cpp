// bench_lightning_decode: one decode step of all 24 Lightning layers of MiniCPM-SALA 9B at batch 1 (32 heads x 128 x
// 128 fp32 state per layer). The floor is state traffic (read + write, 48 MiB each) over the measured copy bandwidth.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "sala/backend/cuda/cuda_check.h"
#include "sala/backend/cuda/ops.h"

using namespace sala;

int main() {
  const int64_t layers = 24, H = 32, D = 128, iters = 200;
  const size_t state_elems = size_t(layers * H * D * D);
  float *state, *q, *k, *v, *o, *g, *buf_a, *buf_b;
  SALA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&state), state_elems * 4));
  SALA_CUDA_CHECK(cudaMemset(state, 0, state_elems * 4));
  for (float** p : {&q, &k, &v, &o}) {
    SALA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(p), size_t(H * D) * 4));
    SALA_CUDA_CHECK(cudaMemset(*p, 0, size_t(H * D) * 4));
  }
  SALA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&g), size_t(H) * 4));
  SALA_CUDA_CHECK(cudaMemset(g, 0, size_t(H) * 4));
  // measured bandwidth: device-to-device copy of 1 GiB (read + write)
  const size_t bw_bytes = size_t(1) << 30;
  SALA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&buf_a), bw_bytes));
  SALA_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&buf_b), bw_bytes));
  cudaEvent_t e0, e1;
  SALA_CUDA_CHECK(cudaEventCreate(&e0));
  SALA_CUDA_CHECK(cudaEventCreate(&e1));
  auto time_ms = [&](auto&& fn, int reps) {
    fn();
    SALA_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> t;
    for (int r = 0; r < reps; ++r) {
      SALA_CUDA_CHECK(cudaEventRecord(e0));
      fn();
      SALA_CUDA_CHECK(cudaEventRecord(e1));
      SALA_CUDA_CHECK(cudaEventSynchronize(e1));
      float ms;
      SALA_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    return double(t[t.size() / 2]);
  };
  const double copy_ms = time_ms([&] { SALA_CUDA_CHECK(cudaMemcpy(buf_b, buf_a, bw_bytes, cudaMemcpyDeviceToDevice)); }, 10);
  const double bw = 2.0 * double(bw_bytes) / (copy_ms * 1e-3);  // bytes/s, read + write
  const double step_ms = time_ms([&] {
    for (int64_t it = 0; it < iters; ++it)
      for (int64_t l = 0; l < layers; ++l)
        cuda::lightning_decode(o, q, k, v, state + size_t(l * H * D * D), g, 0.088f, H, D, nullptr);
  }, 5) / double(iters);
  // The same 24 launches captured once in a CUDA graph, as a decode step would run: kernel time without launch cost.
  cudaStream_t stream;
  SALA_CUDA_CHECK(cudaStreamCreate(&stream));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  SALA_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  for (int64_t l = 0; l < layers; ++l)
    cuda::lightning_decode(o, q, k, v, state + size_t(l * H * D * D), g, 0.088f, H, D, stream);
  SALA_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  SALA_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  const double graph_ms = time_ms([&] {
    for (int64_t it = 0; it < iters; ++it) SALA_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    SALA_CUDA_CHECK(cudaStreamSynchronize(stream));
  }, 5) / double(iters);
  const double bytes = 2.0 * double(state_elems) * 4;
  const double floor_ms = bytes / bw * 1e3;
  std::printf("bench_lightning_decode: 24 layers x 32 heads x 128^2 fp32 state, batch 1\n");
  std::printf("measured copy bandwidth %.0f GB/s\n", bw / 1e9);
  std::printf("%-28s %10s %10s %8s\n", "op", "time_us", "floor_us", "ratio");
  std::printf("%-28s %10.1f %10.1f %8.2f\n", "lightning_decode x24 graph", graph_ms * 1e3, floor_ms * 1e3,
              graph_ms / floor_ms);
  std::printf("%-28s %10.1f %10.1f %8.2f\n", "lightning_decode x24", step_ms * 1e3, floor_ms * 1e3, step_ms / floor_ms);
  return 0;
}
