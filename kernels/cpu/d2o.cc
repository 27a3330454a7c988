// D2O (design §4): cumulative-attention eviction with sinks and a recent window, layer ratios
// from attention variance, and the merge of evicted tokens into similar kept keys.
#include "kernels/cpu/d2o.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "kernels/cpu/attention_scores.h"
#include "kernels/cpu/budgets.h"

namespace kvc::cpu {
namespace {

// Evicted keys compared per GEMM: bounds the [chunk, t] similarity buffer.
constexpr int64_t kEvictChunk = 256;

Status CheckOptions(const D2oOptions& o) {
  if (!(o.hh_ratio >= 0.0) || !(o.recent_ratio >= 0.0) || o.sinks < 0) {
    return Status::InvalidArgument("d2o: hh_ratio, recent_ratio and sinks must be >= 0");
  }
  return Status::OK();
}

// Population variance over positions of the min-max-normalised a: a' = (a - min) / (max - min)
// (a' = 0 when a is constant).
double MinMaxVariance(const std::vector<double>& a) {
  const auto [lo, hi] = std::minmax_element(a.begin(), a.end());
  const double range = *hi - *lo;
  if (!(range > 0.0)) return 0.0;
  double mean = 0.0, sq = 0.0;
  for (double x : a) mean += (x - *lo) / range;
  mean /= static_cast<double>(a.size());
  for (double x : a) sq += ((x - *lo) / range - mean) * ((x - *lo) / range - mean);
  return sq / static_cast<double>(a.size());
}

}  // namespace

double D2oThreshold::Update(double mean_s, const D2oOptions& o) {
  tau_ = initialised_ ? o.ema_alpha * tau_ + o.ema_beta * mean_s : mean_s;
  initialised_ = true;
  return tau_;
}

// score_h[j] = sum_{q in group(h)} sum_r softmax_causal(q_r . k / sqrt(d))_j over the q_window
// rows (the cumulative attention); forced = the sinks and the last
// round(head_budget * recent / (hh + recent)) positions (D2O splits its budget between heavy
// hitters and recent tokens in the ratio hh_ratio : recent_ratio).
Result<ScoreSet> ScoreD2o(const PreparedCache& c, const D2oOptions& o, int64_t head_budget) {
  KVC_RETURN_IF_ERROR(CheckPrepared(c));
  KVC_RETURN_IF_ERROR(CheckOptions(o));
  KVC_ASSIGN_OR_RETURN(const int64_t rows, WindowRows(c, 0, "d2o"));
  const int L = c.layout.n_layers, H = c.layout.n_kv_heads, G = c.layout.group();
  ScoreSet out = ScoreSet::Zeros(L, H, c.T());
  for (int l = 0; l < L; ++l) {
    for (int h = 0; h < H; ++h) {
      float* s = out.at(l, h);
      for (int j = h * G; j < (h + 1) * G; ++j) {
        const std::vector<double> sums = WindowColumnSums(c, l, j, rows);
        for (int64_t t = 0; t < c.T(); ++t) s[t] += static_cast<float>(sums[t]);
      }
    }
  }
  const double rho = o.hh_ratio + o.recent_ratio;
  const double recent_share = rho > 0.0 ? o.recent_ratio / rho : 0.0;
  const int64_t recent = std::llround(recent_share * static_cast<double>(head_budget));
  out.forced = SinksAndRecent(c.T(), o.sinks, recent);
  return out;
}

// ratio_l = clamp(softmax(-sigma)_l * L * rho, 0.01, 1), sigma_l = mean over query heads of
// MinMaxVariance(column sums of the causal window attention), rho = hh_ratio + recent_ratio.
Result<std::vector<double>> D2oLayerRatios(const PreparedCache& c, const D2oOptions& o) {
  KVC_RETURN_IF_ERROR(CheckPrepared(c));
  KVC_RETURN_IF_ERROR(CheckOptions(o));
  KVC_ASSIGN_OR_RETURN(const int64_t rows, WindowRows(c, 0, "d2o allocator"));
  const int L = c.layout.n_layers, NQ = c.layout.n_q_heads;
  std::vector<double> sigma(L, 0.0);
  for (int l = 0; l < L; ++l) {
    for (int j = 0; j < NQ; ++j) sigma[l] += MinMaxVariance(WindowColumnSums(c, l, j, rows));
    sigma[l] /= NQ;
  }
  return D2oRatiosFromSigma(sigma, o);
}

std::vector<double> D2oRatiosFromSigma(const std::vector<double>& sigma, const D2oOptions& o) {
  const int L = static_cast<int>(sigma.size());
  const double lo = *std::min_element(sigma.begin(), sigma.end());
  double z = 0.0;
  for (double s : sigma) z += std::exp(-(s - lo));
  const double rho = o.hh_ratio + o.recent_ratio;
  std::vector<double> ratio(L);
  for (int l = 0; l < L; ++l) {
    ratio[l] = std::clamp(std::exp(-(sigma[l] - lo)) / z * L * rho, 0.01, 1.0);
  }
  return ratio;
}

std::vector<int> D2oUncompressedLayers(const D2oOptions& o, int L) {
  std::vector<int> out;
  for (int i : o.uncompressed_layers) {
    const int l = i < 0 ? L + i : i;
    if (l >= 0 && l < L) out.push_back(l);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

namespace {

// The evicted positions of one head, each with its best cosine similarity s to a kept key and
// the index (into the kept list) of that key.
struct HeadMatch {
  std::vector<int64_t> evicted;
  std::vector<float> s;
  std::vector<int64_t> target;
};

// Rows of K at `pos`, each divided by its L2 norm (a zero row stays zero).
std::vector<float> UnitRows(const float* K, const std::vector<int64_t>& pos, size_t first,
                            size_t count, int d) {
  std::vector<float> out(count * d);
  for (size_t i = 0; i < count; ++i) {
    const float* k = K + pos[first + i] * d;
    double n2 = 0.0;
    for (int x = 0; x < d; ++x) n2 += static_cast<double>(k[x]) * k[x];
    const float inv = n2 > 0.0 ? static_cast<float>(1.0 / std::sqrt(n2)) : 0.0f;
    for (int x = 0; x < d; ++x) out[i * d + x] = k[x] * inv;
  }
  return out;
}

// s_e = max_j cos(k_e, k_j), j* = argmax over the kept keys (ties: the earlier kept key).
HeadMatch MatchEvicted(const float* K, int64_t T, int d, const std::vector<int64_t>& kept) {
  HeadMatch m;
  if (kept.empty()) return m;  // nothing to merge into
  std::vector<char> is_kept(T, 0);
  for (int64_t p : kept) is_kept[p] = 1;
  for (int64_t j = 0; j < T; ++j) {
    if (!is_kept[j]) m.evicted.push_back(j);
  }
  const int64_t t = static_cast<int64_t>(kept.size());
  const std::vector<float> kk = UnitRows(K, kept, 0, kept.size(), d);
  m.s.resize(m.evicted.size());
  m.target.resize(m.evicted.size());
  std::vector<float> sim(static_cast<size_t>(kEvictChunk) * t);
  for (size_t e0 = 0; e0 < m.evicted.size(); e0 += kEvictChunk) {
    const size_t n = std::min<size_t>(kEvictChunk, m.evicted.size() - e0);
    const std::vector<float> ke = UnitRows(K, m.evicted, e0, n, d);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(t),
                d, 1.0f, ke.data(), d, kk.data(), d, 0.0f, sim.data(), static_cast<int>(t));
    for (size_t i = 0; i < n; ++i) {
      const float* row = sim.data() + i * t;
      const int64_t best = std::max_element(row, row + t) - row;
      m.s[e0 + i] = row[best];
      m.target[e0 + i] = best;
    }
  }
  return m;
}

// Applies k_j <- (k_j + sum_{e -> j} s_e k_e) / (1 + n_j) (and the same for values) to one head,
// merging the evicted entries whose head-mean similarity m_e reaches tau.
HeadResult MergeHead(const PreparedCache& c, int l, int h, const std::vector<int64_t>& kept,
                     const HeadMatch& m, const std::vector<double>& mean_s, double tau) {
  const int d = c.d();
  const float* K = c.K(l, h);
  const float* V = c.V(l, h);
  const size_t t = kept.size();
  std::vector<double> acc_k(t * d, 0.0), acc_v(t * d, 0.0);
  std::vector<int64_t> n(t, 0);
  for (size_t i = 0; i < m.evicted.size(); ++i) {
    const int64_t e = m.evicted[i];
    if (!(mean_s[e] >= tau)) continue;
    const int64_t j = m.target[i];
    for (int x = 0; x < d; ++x) {
      acc_k[j * d + x] += static_cast<double>(m.s[i]) * K[e * d + x];
      acc_v[j * d + x] += static_cast<double>(m.s[i]) * V[e * d + x];
    }
    ++n[j];
  }
  HeadResult r;
  r.positions = kept;
  r.k.resize(t * d);
  r.v.resize(t * d);
  r.beta.assign(t, 0.0f);
  for (size_t j = 0; j < t; ++j) {
    const double inv = 1.0 / static_cast<double>(1 + n[j]);
    for (int x = 0; x < d; ++x) {
      r.k[j * d + x] = static_cast<float>((K[kept[j] * d + x] + acc_k[j * d + x]) * inv);
      r.v[j * d + x] = static_cast<float>((V[kept[j] * d + x] + acc_v[j * d + x]) * inv);
    }
  }
  return r;
}

// One layer of D2oMergeRound: match every head, average s over the heads that evicted each
// position, update the layer's threshold with the mean of those averages, merge.
std::vector<HeadResult> MergeLayer(const PreparedCache& c, int l,
                                   const std::vector<std::vector<int64_t>>& kept,
                                   const D2oOptions& o, D2oThreshold* threshold) {
  const int H = c.layout.n_kv_heads;
  const int64_t T = c.T();
  std::vector<HeadMatch> match(H);
  std::vector<double> mean_s(T, 0.0);
  std::vector<int> count(T, 0);
  for (int h = 0; h < H; ++h) {
    match[h] = MatchEvicted(c.K(l, h), T, c.d(), kept[h]);
    for (size_t i = 0; i < match[h].evicted.size(); ++i) {
      mean_s[match[h].evicted[i]] += match[h].s[i];
      ++count[match[h].evicted[i]];
    }
  }
  double sum = 0.0;
  int64_t positions = 0;
  for (int64_t e = 0; e < T; ++e) {
    if (count[e] == 0) continue;
    mean_s[e] /= count[e];
    sum += mean_s[e];
    ++positions;
  }
  const double tau = positions > 0 && o.merge ? threshold->Update(sum / positions, o)
                                              : std::numeric_limits<double>::infinity();
  std::vector<HeadResult> out(H);
  for (int h = 0; h < H; ++h) out[h] = MergeHead(c, l, h, kept[h], match[h], mean_s, tau);
  return out;
}

}  // namespace

Status CheckD2oSelection(const PreparedCache& c, const Selection& sel) {
  const int L = c.layout.n_layers, H = c.layout.n_kv_heads;
  if (static_cast<int>(sel.size()) != L) {
    return Status::InvalidArgument("d2o merge: selection has " + std::to_string(sel.size()) +
                                   " layers, cache has " + std::to_string(L));
  }
  for (int l = 0; l < L; ++l) {
    if (static_cast<int>(sel[l].size()) != H) {
      return Status::InvalidArgument("d2o merge: selection layer " + std::to_string(l) +
                                     " has the wrong number of heads");
    }
    for (const std::vector<int64_t>& pos : sel[l]) {
      for (size_t i = 0; i < pos.size(); ++i) {
        if (pos[i] < 0 || pos[i] >= c.T() || (i > 0 && pos[i] <= pos[i - 1])) {
          return Status::InvalidArgument("d2o merge: positions must be sorted, unique, in [0, T)");
        }
      }
    }
  }
  return Status::OK();
}

Result<LayerResults> D2oMergeRound(const PreparedCache& c, const Selection& sel,
                                   const D2oOptions& o, std::vector<D2oThreshold>* thresholds) {
  KVC_RETURN_IF_ERROR(CheckPrepared(c));
  KVC_RETURN_IF_ERROR(CheckD2oSelection(c, sel));
  const int L = c.layout.n_layers;
  if (thresholds->empty()) thresholds->resize(L);
  if (static_cast<int>(thresholds->size()) != L) {
    return Status::InvalidArgument("d2o merge: one threshold per layer is required");
  }
  LayerResults out(L);
  for (int l = 0; l < L; ++l) out[l] = MergeLayer(c, l, sel[l], o, &(*thresholds)[l]);
  return out;
}

Result<LayerResults> D2oMerge(const PreparedCache& c, const Selection& sel, const D2oOptions& o) {
  std::vector<D2oThreshold> fresh;
  return D2oMergeRound(c, sel, o, &fresh);
}

}  // namespace kvc::cpu
