// CRC-32C (Castagnoli) as LevelDB frames its log records, with LevelDB's masking.
#pragma once

#include <cstddef>
#include <cstdint>

namespace uop::audit::crc32c {

// The CRC-32C of concat(A, data[0,n-1]) where init_crc is the CRC-32C of some string A.
uint32_t Extend(uint32_t init_crc, const char* data, size_t n);

inline uint32_t Value(const char* data, size_t n) { return Extend(0, data, n); }

// A CRC stored next to the data it covers is masked, so that the CRC of a string that itself
// contains embedded CRCs does not degenerate (LevelDB util/crc32c.h).
inline constexpr uint32_t kMaskDelta = 0xa282ead8ul;
inline uint32_t Mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }
inline uint32_t Unmask(uint32_t masked) {
  uint32_t rot = masked - kMaskDelta;
  return ((rot >> 17) | (rot << 15));
}

}  // namespace uop::audit::crc32c
