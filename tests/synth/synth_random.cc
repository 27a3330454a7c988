#include "tests/synth/synth_random.h"

#include <cmath>
#include <numbers>
#include <vector>

namespace kvc::synth_detail {
namespace {

constexpr int kTableSize = 1 << 16;

// Inverse of the standard normal CDF for p in (0, 0.5]: a rational first guess (Acklam's
// coefficients), refined by two Newton steps on erfc.
double InverseNormalLowerHalf(double p) {
  static constexpr double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                                 -2.400758277161838e+00, -2.549671010887340e+00,
                                 4.374664141464968e+00,  2.938163982698783e+00};
  static constexpr double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                                 2.445134137142996e+00, 3.754408661907416e+00};
  static constexpr double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                                 -2.759285104469687e+02, 1.383577518672690e+02,
                                 -3.066479806614716e+01, 2.506628277459239e+00};
  static constexpr double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                                 -1.556989798598866e+02, 6.680131188771972e+01,
                                 -1.328068155288572e+01};
  double x;
  if (p < 0.02425) {
    const double q = std::sqrt(-2.0 * std::log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
  } else {
    const double q = p - 0.5;
    const double r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0);
  }
  for (int it = 0; it < 2; ++it) {
    const double cdf = 0.5 * std::erfc(-x / std::sqrt(2.0));
    const double pdf = std::exp(-0.5 * x * x) / std::sqrt(2.0 * std::numbers::pi);
    x -= (cdf - p) / pdf;
  }
  return x;
}

std::vector<float> BuildNormalTable() {
  std::vector<float> t(kTableSize);
  for (int i = 0; i < kTableSize / 2; ++i) {
    const double p = (i + 0.5) / kTableSize;
    const float z = static_cast<float>(InverseNormalLowerHalf(p));
    t[i] = z;
    t[kTableSize - 1 - i] = -z;  // exact symmetry: the table has mean zero
  }
  return t;
}

}  // namespace

uint64_t StreamKey(uint64_t seed, std::initializer_list<uint64_t> path) {
  uint64_t key = Mix64(seed ^ 0x6a09e667f3bcc908ULL);
  for (uint64_t p : path) key = Mix64(key ^ Mix64(p + kGolden));
  return key;
}

const float* NormalTable() {
  static const std::vector<float> table = BuildNormalTable();
  return table.data();
}

void Rng::Normals(float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const uint64_t x = Next();
    out[i] = table_[x & 0xffffu];
    out[i + 1] = table_[(x >> 16) & 0xffffu];
    out[i + 2] = table_[(x >> 32) & 0xffffu];
    out[i + 3] = table_[x >> 48];
  }
  if (i < n) {
    uint64_t x = Next();
    for (; i < n; ++i, x >>= 16) out[i] = table_[x & 0xffffu];
  }
}

}  // namespace kvc::synth_detail
