// Deterministic RNG (splitmix64 seeding + xoshiro256**) so weights, tests and sampling repeat across machines.
#pragma once
#include <cmath>
#include <cstdint>

namespace sala {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0x5a1a) {
    for (auto& w : s_) {
      seed += 0x9e3779b97f4a7c15ull;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      w = z ^ (z >> 31);
    }
  }
  uint64_t next() {
    uint64_t r = rotl(s_[1] * 5, 7) * 9, t = s_[1] << 17;
    s_[2] ^= s_[0]; s_[3] ^= s_[1]; s_[1] ^= s_[2]; s_[0] ^= s_[3]; s_[2] ^= t; s_[3] = rotl(s_[3], 45);
    return r;
  }
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  // Box-Muller: two independent standard normals from two uniforms.
  void normal_pair(double& a, double& b) {
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    const double r = std::sqrt(-2.0 * std::log(u1)), th = 6.283185307179586 * u2;
    a = r * std::cos(th);
    b = r * std::sin(th);
  }
  double normal() {  // the first of a pair (the stream tests and weights were drawn with)
    double a, b;
    normal_pair(a, b);
    return a;
  }
  uint64_t below(uint64_t n) { return next() % n; }
  // out[0..n) = std x standard normals, both of each Box-Muller pair used.
  void fill_normal(float* out, int64_t n, float std) {
    for (int64_t i = 0; i < n; i += 2) {
      double a, b;
      normal_pair(a, b);
      out[i] = float(a) * std;
      if (i + 1 < n) out[i + 1] = float(b) * std;
    }
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace sala
