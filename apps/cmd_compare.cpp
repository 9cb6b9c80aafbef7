// sala compare: two safetensors dumps (e.g. `sala dump` of sala and of another implementation) tensor by tensor, in
// the first file's order; reports the first tensor whose relative error exceeds --rtol.
#include <cmath>
#include <limits>
#include <fmt/format.h>

#include "commands.h"
#include "sala/core/error.h"
#include "sala/io/safetensors.h"

namespace sala::app {

namespace {

std::vector<double> as_f64(const io::SafetensorsFile& f, const io::TensorInfo& t) {
  auto b = f.bytes(t);
  const size_t n = size_t(t.numel());
  std::vector<double> out(n);
  if (dtype_is_float(t.dtype)) {
    std::vector<float> tmp(n);
    convert_to_f32(tmp.data(), b.data(), t.dtype, n);
    for (size_t i = 0; i < n; ++i) out[i] = tmp[i];
  } else if (t.dtype == DType::I32) {
    const auto* p = reinterpret_cast<const int32_t*>(b.data());
    for (size_t i = 0; i < n; ++i) out[i] = p[i];
  } else if (t.dtype == DType::I64) {
    const auto* p = reinterpret_cast<const int64_t*>(b.data());
    for (size_t i = 0; i < n; ++i) out[i] = double(p[i]);
  } else {
    fail("{}: tensor '{}' has dtype {}, which compare does not read", f.path(), t.name, dtype_name(t.dtype));
  }
  return out;
}

}  // namespace

void add_compare_commands(CLI::App& app) {
  static std::string a_path, b_path;
  static double rtol = 1e-3;
  static bool all = false;
  auto* cmd = app.add_subcommand("compare", "Compare two safetensors dumps tensor by tensor and name the first that "
                                            "diverges (exit 1 if any exceeds --rtol)");
  cmd->add_option("a", a_path, "First dump (its tensor order is used)")->required();
  cmd->add_option("b", b_path, "Second dump")->required();
  cmd->add_option("--rtol", rtol, "Relative error allowed: max|a-b| / max|b|")->capture_default_str();
  cmd->add_flag("--all", all, "Print every tensor, not only up to the first divergence");
  cmd->callback([] {
    if (!(rtol >= 0)) fail_usage("--rtol = {} must be a non-negative number", rtol);
    auto a = io::SafetensorsFile::open(a_path), b = io::SafetensorsFile::open(b_path);
    fmt::print("{:<40} {:>14} {:>12} {:>12}\n", "tensor", "shape", "max_abs", "rel");
    std::string first_bad;
    size_t compared = 0, missing = 0;
    for (const auto& ta : a.tensors()) {
      const io::TensorInfo* tb = b.find(ta.name);
      if (!tb) {
        ++missing;
        continue;
      }
      const std::string shape = shape_str(ta.shape);
      if (tb->shape != ta.shape) {
        fmt::print("{:<40} {:>14} shape differs in {}\n", ta.name, shape, b_path);
        if (first_bad.empty()) first_bad = ta.name;
        continue;
      }
      auto x = as_f64(a, ta), y = as_f64(b, *tb);
      // A NaN (or an Inf not matched by the same Inf) anywhere is a divergence: max() would silently skip it.
      double num = 0, den = 1e-30;
      size_t non_finite = 0, first_nf = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!std::isfinite(x[i]) || !std::isfinite(y[i])) {
          if (x[i] == y[i]) continue;  // the same infinity on both sides
          if (non_finite++ == 0) first_nf = i;
          continue;
        }
        num = std::max(num, std::abs(x[i] - y[i]));
        den = std::max(den, std::abs(y[i]));
      }
      const double rel = non_finite ? std::numeric_limits<double>::infinity() : num / den;
      ++compared;
      const bool bad = !(rel <= rtol);
      std::string note = bad ? "  <-- diverges" : "";
      if (non_finite)
        note += fmt::format(" ({} non-finite values differ; first at flat index {}: {} vs {})", non_finite, first_nf,
                            x[first_nf], y[first_nf]);
      if (all || first_bad.empty())
        fmt::print("{:<40} {:>14} {:>12.3e} {:>12.3e}{}\n", ta.name, shape, num, rel, note);
      if (bad && first_bad.empty()) first_bad = ta.name;
    }
    fmt::print("{} tensors compared, {} only in {}\n", compared, missing, a_path);
    if (!first_bad.empty()) fail("first tensor over rtol {}: '{}'", rtol, first_bad);
    if (compared == 0) fail("no tensor names in common between {} and {}", a_path, b_path);
  });
}

}  // namespace sala::app
