// Reference ops: products, row statistics, softmax, column scores, top-k, gathers, comparisons.
#include "kernels/cuda/reference_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace kvc::cuda::ref {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int64_t Cols(const Offsets& o, int64_t b) { return o[b + 1] - o[b]; }

}  // namespace

Offsets UniformOffsets(int64_t batch, int64_t cols) {
  Offsets o(size_t(batch) + 1);
  for (int64_t b = 0; b <= batch; ++b) o[b] = b * cols;
  return o;
}

Offsets OffsetsFromCounts(const std::vector<int64_t>& counts) {
  Offsets o(counts.size() + 1, 0);
  for (size_t i = 0; i < counts.size(); ++i) o[i + 1] = o[i] + counts[i];
  return o;
}

Vec Scores(const Vec& q, const Vec& k, int64_t batch, int64_t n, int64_t T, int64_t d,
           float scale) {
  Vec s(size_t(batch * n * T));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < n; ++i) {
      const float* qi = q.data() + (b * n + i) * d;
      for (int64_t j = 0; j < T; ++j) {
        const float* kj = k.data() + (b * T + j) * d;
        double acc = 0;
        for (int64_t c = 0; c < d; ++c) acc += double(qi[c]) * kj[c];
        s[(b * n + i) * T + j] = float(double(scale) * acc);
      }
    }
  }
  return s;
}

Vec AttentionOutputs(const Vec& p, const Vec& v, int64_t batch, int64_t n, int64_t T, int64_t d) {
  Vec y(size_t(batch * n * d));
  std::vector<double> acc(static_cast<size_t>(d));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < n; ++i) {
      std::fill(acc.begin(), acc.end(), 0.0);
      const float* pi = p.data() + (b * n + i) * T;
      for (int64_t j = 0; j < T; ++j) {
        const float* vj = v.data() + (b * T + j) * d;
        for (int64_t c = 0; c < d; ++c) acc[c] += double(pi[j]) * vj[c];
      }
      for (int64_t c = 0; c < d; ++c) y[(b * n + i) * d + c] = float(acc[c]);
    }
  }
  return y;
}

RowStatsResult RowStats(const Vec& x, const Offsets& offsets, int64_t rows, const Vec* bias) {
  const int64_t batch = int64_t(offsets.size()) - 1;
  RowStatsResult out{Vec(size_t(batch * rows)), Vec(size_t(batch * rows))};
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t off = offsets[b], cols = Cols(offsets, b);
    for (int64_t i = 0; i < rows; ++i) {
      const float* row = x.data() + rows * off + i * cols;
      auto val = [&](int64_t j) { return row[j] + (bias != nullptr ? (*bias)[off + j] : 0.f); };
      float m = kNegInf;
      for (int64_t j = 0; j < cols; ++j) m = std::max(m, val(j));
      double sum = 0;
      for (int64_t j = 0; j < cols; ++j) sum += std::exp(double(val(j)) - double(m));
      out.max[b * rows + i] = m;
      out.lse[b * rows + i] = m == kNegInf ? kNegInf : float(double(m) + std::log(sum));
    }
  }
  return out;
}

Vec RowExpShift(const Vec& x, const Offsets& offsets, int64_t rows, const Vec* bias,
                const Vec& shift) {
  const int64_t batch = int64_t(offsets.size()) - 1;
  Vec y(x.size());
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t off = offsets[b], cols = Cols(offsets, b);
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t base = rows * off + i * cols;
      for (int64_t j = 0; j < cols; ++j) {
        const double bj = bias != nullptr ? double((*bias)[off + j]) : 0.0;
        y[base + j] = float(std::exp(double(x[base + j]) + bj - double(shift[b * rows + i])));
      }
    }
  }
  return y;
}

Vec ColumnScores(const Vec& s, const Offsets& offsets, int64_t rows, const Vec& lse) {
  const int64_t batch = int64_t(offsets.size()) - 1;
  Vec score(size_t(offsets.back()));
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t off = offsets[b], cols = Cols(offsets, b);
    for (int64_t j = 0; j < cols; ++j) {
      double acc = 0;
      for (int64_t i = 0; i < rows; ++i) {
        const double a = std::exp(double(s[rows * off + i * cols + j]) - lse[b * rows + i]);
        acc += a * a;
      }
      score[off + j] = float(std::sqrt(acc / double(rows)));
    }
  }
  return score;
}

Vec RowMass(const Vec& lse, const Vec& max) {
  Vec z(lse.size());
  for (size_t i = 0; i < lse.size(); ++i) {
    z[i] = lse[i] == kNegInf ? 0.f : float(std::exp(double(lse[i]) - double(max[i])));
  }
  return z;
}

std::vector<int32_t> TopK(const Vec& scores, const Offsets& seg_offsets,
                          const Offsets& out_offsets) {
  const int64_t batch = int64_t(seg_offsets.size()) - 1;
  std::vector<int32_t> out(size_t(out_offsets.back()));
  for (int64_t b = 0; b < batch; ++b) {
    const float* s = scores.data() + seg_offsets[b];
    std::vector<int32_t> pos(size_t(Cols(seg_offsets, b)));
    std::iota(pos.begin(), pos.end(), 0);
    std::stable_sort(pos.begin(), pos.end(), [s](int32_t x, int32_t y) { return s[x] > s[y]; });
    const int64_t k = Cols(out_offsets, b);
    pos.resize(size_t(k));
    std::sort(pos.begin(), pos.end());
    std::copy(pos.begin(), pos.end(), out.begin() + out_offsets[b]);
  }
  return out;
}

Vec GatherRows(const Vec& src, int64_t src_rows, int64_t d, const std::vector<int32_t>& idx,
               const Offsets& offsets) {
  const int64_t batch = int64_t(offsets.size()) - 1;
  Vec out(size_t(offsets.back() * d));
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t r = offsets[b]; r < offsets[b + 1]; ++r) {
      const float* from = src.data() + (b * src_rows + idx[r]) * d;
      std::copy(from, from + d, out.begin() + r * d);
    }
  }
  return out;
}

double Nmse(const Vec& got, const Vec& want) {
  if (got.size() != want.size() || !AllFinite(got)) {
    return std::numeric_limits<double>::infinity();
  }
  double err = 0, ref = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double e = double(got[i]) - double(want[i]);
    err += e * e;
    ref += double(want[i]) * want[i];
  }
  return ref > 0 ? err / ref : err;
}

bool AllFinite(const Vec& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

}  // namespace kvc::cuda::ref
