// Element types of stored tensors (safetensors names) and the float conversions the CPU backend needs.
// bf16 and f16 are stored as raw uint16 bit patterns; conversion to f32 is exact, from f32 rounds to nearest even.
#pragma once
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace sala {

enum class DType : uint8_t { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL };

std::string_view dtype_name(DType t);                       // "F32", "BF16", ... as in safetensors
std::optional<DType> dtype_from_name(std::string_view s);   // nullopt for unknown names
size_t dtype_size(DType t);                                 // bytes per element
inline bool dtype_is_float(DType t) {
  return t == DType::F64 || t == DType::F32 || t == DType::F16 || t == DType::BF16;
}
std::string shape_str(std::span<const int64_t> shape);  // "[2, 3]", as messages print shapes

inline float f32_from_bits(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t bits_from_f32(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(uint32_t(h) << 16); }
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = bits_from_f32(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // NaN stays quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                          // round to nearest even
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// Converts n elements of a float tensor stored as `t` into f32.
void convert_to_f32(float* out, const void* src, DType t, size_t n);
// Converts n f32 values into storage type `t` (F32, F16, BF16, F64).
void convert_from_f32(void* out, const float* src, DType t, size_t n);

}  // namespace sala
