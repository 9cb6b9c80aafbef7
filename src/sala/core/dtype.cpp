#include "sala/core/dtype.h"

#include <cmath>

#include "sala/core/error.h"

namespace sala {

namespace {
struct DTypeInfo {
  DType t;
  std::string_view name;
  size_t size;
};
constexpr DTypeInfo kInfo[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2},  {DType::BF16, "BF16", 2},
    {DType::I64, "I64", 8}, {DType::I32, "I32", 4}, {DType::I16, "I16", 2},  {DType::I8, "I8", 1},
    {DType::U64, "U64", 8}, {DType::U32, "U32", 4}, {DType::U16, "U16", 2},  {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
};
}  // namespace

std::string_view dtype_name(DType t) {
  for (auto& i : kInfo) if (i.t == t) return i.name;
  return "?";
}
std::optional<DType> dtype_from_name(std::string_view s) {
  for (auto& i : kInfo) if (i.name == s) return i.t;
  return std::nullopt;
}
size_t dtype_size(DType t) {
  for (auto& i : kInfo) if (i.t == t) return i.size;
  return 0;
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: man * 2^-24
    float v = std::ldexp(float(man), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return f32_from_bits(sign | 0x7f800000u | (man << 13));
  return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t f32_to_f16(float f) {
  uint32_t u = bits_from_f32(f), sign = (u >> 16) & 0x8000u;
  uint32_t au = u & 0x7fffffffu;
  if (au > 0x7f800000u) return uint16_t(sign | 0x7e00u);
  if (au >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (au < 0x38800000u) {                                    // below 2^-14: subnormal, exact RNE via float math
    float a = f32_from_bits(au);
    float scaled = a * 16777216.0f;  // a / 2^-24, exact
    uint32_t m = uint32_t(std::nearbyint(scaled));
    return uint16_t(sign | m);
  }
  uint32_t r = au + 0xfffu + ((au >> 13) & 1u) - (112u << 23);
  return uint16_t(sign | (r >> 13));
}

void convert_to_f32(float* out, const void* src, DType t, size_t n) {
  switch (t) {
    case DType::F32: std::memcpy(out, src, n * 4); return;
    case DType::F64: { auto* s = static_cast<const double*>(src); for (size_t i = 0; i < n; ++i) out[i] = float(s[i]); return; }
    case DType::BF16: { auto* s = static_cast<const uint16_t*>(src); for (size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(s[i]); return; }
    case DType::F16: { auto* s = static_cast<const uint16_t*>(src); for (size_t i = 0; i < n; ++i) out[i] = f16_to_f32(s[i]); return; }
    default: fail("cannot convert dtype {} to F32", dtype_name(t));
  }
}

void convert_from_f32(void* out, const float* src, DType t, size_t n) {
  switch (t) {
    case DType::F32: std::memcpy(out, src, n * 4); return;
    case DType::F64: { auto* d = static_cast<double*>(out); for (size_t i = 0; i < n; ++i) d[i] = src[i]; return; }
    case DType::BF16: { auto* d = static_cast<uint16_t*>(out); for (size_t i = 0; i < n; ++i) d[i] = f32_to_bf16(src[i]); return; }
    case DType::F16: { auto* d = static_cast<uint16_t*>(out); for (size_t i = 0; i < n; ++i) d[i] = f32_to_f16(src[i]); return; }
    default: fail("cannot convert F32 to dtype {}", dtype_name(t));
  }
}

std::string shape_str(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace sala
