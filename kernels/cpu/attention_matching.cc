#include "kernels/cpu/attention_matching.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "kernels/cpu/linalg.h"

namespace kvc::cpu {
namespace {

std::string Where(int l, int h) {
  return "layer " + std::to_string(l) + " kv head " + std::to_string(h);
}

// Rows of `src` (row length `cols`) at `idx`, packed.
std::vector<float> GatherRows(const float* src, int64_t cols, const std::vector<int64_t>& idx) {
  std::vector<float> out(idx.size() * static_cast<size_t>(cols));
  for (size_t i = 0; i < idx.size(); ++i) {
    std::copy(src + idx[i] * cols, src + (idx[i] + 1) * cols, out.begin() + i * cols);
  }
  return out;
}

// Columns `idx` of a row-major [rows, cols] matrix, as a row-major [rows, idx.size()] matrix.
std::vector<float> GatherCols(const float* src, int64_t rows, int64_t cols,
                              const std::vector<int64_t>& idx) {
  const size_t t = idx.size();
  std::vector<float> out(static_cast<size_t>(rows) * t);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = src + r * cols;
    float* dst = out.data() + r * t;
    for (size_t j = 0; j < t; ++j) dst[j] = row[idx[j]];
  }
  return out;
}

// Value-fit safeguard: a fitted value may exceed the largest |V| of the head by this factor.
constexpr float kValueRangeFactor = 4.f;
constexpr int kMaxRidgeEscalations = 8;
constexpr double kFirstEscalatedRidge = 1e-4;  // relative to ||X||_F^2 / t

float MaxAbs(const float* x, int64_t n) {
  float m = 0.f;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

double FrobeniusSq(const std::vector<float>& x) {
  double s = 0;
  for (float e : x) s += static_cast<double>(e) * e;
  return s;
}

bool AllFinite(const std::vector<float>& x) {
  return std::all_of(x.begin(), x.end(), [](float v) { return std::isfinite(v); });
}

Status CheckSelection(const std::vector<int64_t>& sel, int64_t t, int64_t T) {
  if (static_cast<int64_t>(sel.size()) != t) {
    return Status::InvalidArgument("selection has " + std::to_string(sel.size()) +
                                   " keys, budget is " + std::to_string(t));
  }
  for (size_t i = 0; i < sel.size(); ++i) {
    if (sel[i] < 0 || sel[i] >= T || (i > 0 && sel[i] <= sel[i - 1])) {
      return Status::InvalidArgument("selection must be sorted, unique positions in [0, T)");
    }
  }
  return Status::OK();
}

bool IsOmp(AmSelection s) { return s == AmSelection::kOmp || s == AmSelection::kOmpFast; }

std::vector<OmpStage> ScheduleFor(const AmOptions& o) {
  if (o.selection == AmSelection::kOmp) {
    return {OmpStage{std::numeric_limits<int64_t>::max(), 1, 1}};
  }
  return o.omp_fast_schedule;
}

// Drops keys with beta below kRefineDropBelow and refills the selection, up to
// o.refine_rounds times. Updates sel and beta in place.
Status Refine(const AttentionStats& st, const AmOptions& o, double lo, double hi,
              std::vector<int64_t>& sel, std::vector<float>& beta) {
  const int64_t t = static_cast<int64_t>(sel.size());
  std::vector<char> blocked(static_cast<size_t>(st.T), 0);
  int64_t n_blocked = 0;
  std::vector<float> scores;
  for (int round = 0; round < o.refine_rounds; ++round) {
    std::vector<int64_t> kept;
    std::vector<int64_t> dropped;
    for (int64_t i = 0; i < t; ++i) {
      (beta[i] < kRefineDropBelow ? dropped : kept).push_back(sel[i]);
    }
    if (dropped.empty()) break;
    if (st.T - n_blocked - static_cast<int64_t>(dropped.size()) < t) break;  // nothing to refill
    for (int64_t j : dropped) blocked[j] = 1;
    n_blocked += static_cast<int64_t>(dropped.size());
    if (IsOmp(o.selection)) {
      sel = OmpSelect(st, t, ScheduleFor(o), kept, blocked, o.nnls_pg_steps);
    } else {
      if (scores.empty()) scores = HighestAttentionScores(st);
      sel = TopPositions(scores, t, blocked, kept);
    }
    KVC_ASSIGN_OR_RETURN(beta, FitBeta(st, sel, lo, hi, o.nnls_pg_steps));
  }
  return Status::OK();
}

}  // namespace

AmHead MakeAmHead(const PreparedCache& c, int l, int h) {
  const PreparedLayer& L = c.layers[l];
  const int g = c.layout.group();
  const int64_t n_per = L.q_fit->dim(1);
  AmHead head;
  head.k = c.K(l, h);
  head.v = c.V(l, h);
  head.q = L.q_fit->data<float>() + static_cast<size_t>(h) * g * n_per * c.d();
  head.T = c.T();
  head.n = n_per * g;
  head.d = c.d();
  return head;
}

AttentionStats ComputeAttentionStats(const AmHead& head) {
  AttentionStats st;
  ComputeAttentionStats(head, st);
  return st;
}

void ComputeAttentionStats(const AmHead& head, AttentionStats& st) {
  st.n = head.n;
  st.T = head.T;
  st.phi.resize(static_cast<size_t>(head.n) * head.T);
  st.z.resize(static_cast<size_t>(head.n));
  const float scale = 1.f / std::sqrt(static_cast<float>(head.d));
  Gemm(false, true, head.n, head.T, head.d, scale, head.q, head.d, head.k, head.d, 0.f,
       st.phi.data(), head.T);
  std::vector<double> sums(static_cast<size_t>(head.n));
  ExpShiftRows(st.phi.data(), head.n, head.T, head.T, nullptr, sums.data());
  for (int64_t i = 0; i < head.n; ++i) st.z[i] = static_cast<float>(sums[i]);
}

std::vector<float> HighestAttentionScores(const AttentionStats& st) {
  std::vector<double> acc(static_cast<size_t>(st.T), 0.0);
  for (int64_t i = 0; i < st.n; ++i) {
    AccumulateScaledSquares(st.phi.data() + i * st.T, st.T, 1.f / st.z[i], acc.data());
  }
  std::vector<float> out(static_cast<size_t>(st.T));
  const double inv_n = st.n > 0 ? 1.0 / static_cast<double>(st.n) : 0.0;
  for (int64_t j = 0; j < st.T; ++j) out[j] = static_cast<float>(std::sqrt(acc[j] * inv_n));
  return out;
}

std::vector<int64_t> TopPositions(const std::vector<float>& scores, int64_t t,
                                  const std::vector<char>& blocked,
                                  const std::vector<int64_t>& keep) {
  const int64_t T = static_cast<int64_t>(scores.size());
  std::vector<char> taken(static_cast<size_t>(T), 0);
  std::vector<int64_t> out;
  for (int64_t j : keep) {
    if (!taken[j]) out.push_back(j);
    taken[j] = 1;
  }
  std::vector<int64_t> cand;
  for (int64_t j = 0; j < T; ++j) {
    if (!taken[j] && (blocked.empty() || !blocked[j])) cand.push_back(j);
  }
  const int64_t need = std::clamp<int64_t>(t - static_cast<int64_t>(out.size()), 0,
                                           static_cast<int64_t>(cand.size()));
  const auto better = [&](int64_t a, int64_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  };
  std::partial_sort(cand.begin(), cand.begin() + need, cand.end(), better);
  out.insert(out.end(), cand.begin(), cand.begin() + need);
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::vector<float>> FitBeta(const AttentionStats& st, const std::vector<int64_t>& sel,
                                   double lo, double hi, int pg_steps) {
  const int64_t t = static_cast<int64_t>(sel.size());
  if (t == 0) return std::vector<float>{};
  const std::vector<float> a = GatherCols(st.phi.data(), st.n, st.T, sel);
  const std::vector<float> prior(static_cast<size_t>(t), 1.f);
  std::vector<float> w(static_cast<size_t>(t));
  KVC_RETURN_IF_ERROR(BoundedLeastSquares(a.data(), st.n, t, st.z.data(), prior.data(), lo, hi,
                                          pg_steps, w.data()));
  std::vector<float> beta(static_cast<size_t>(t));
  for (int64_t j = 0; j < t; ++j) beta[j] = static_cast<float>(std::log(static_cast<double>(w[j])));
  if (!AllFinite(beta)) return Status::Internal("beta fit produced a non-finite value");
  return beta;
}

Result<std::vector<float>> FitValues(const AmHead& head, const AttentionStats& st,
                                     const std::vector<int64_t>& sel,
                                     const std::vector<float>& beta, double ridge) {
  const int64_t n = head.n, t = static_cast<int64_t>(sel.size()), d = head.d;
  if (t == 0) return std::vector<float>{};
  const std::vector<float> ks = GatherRows(head.k, d, sel);
  const std::vector<float> vs = GatherRows(head.v, d, sel);
  // X = softmax(Q K_S^T / sqrt(d) + beta), n x t.
  std::vector<float> x(static_cast<size_t>(n * t));
  Gemm(false, true, n, t, d, 1.f / std::sqrt(static_cast<float>(d)), head.q, d, ks.data(), d, 0.f,
       x.data(), t);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < t; ++j) x[i * t + j] += beta[j];
  }
  SoftmaxRows(x.data(), n, t, t, nullptr);
  // Y = softmax(s) V = diag(1/z) Phi V, n x d.
  std::vector<float> y(static_cast<size_t>(n * d));
  Gemm(false, false, n, d, head.T, 1.f, st.phi.data(), head.T, head.v, d, 0.f, y.data(), d);
  for (int64_t i = 0; i < n; ++i) {
    const float inv = 1.f / st.z[i];
    for (int64_t c = 0; c < d; ++c) y[i * d + c] *= inv;
  }
  // Solve for the change from the kept values: min ||X D - (Y - X V_S)||^2 + lambda ||D||^2,
  // C_v = V_S + D (with lambda = 0, the least-squares minimiser nearest to V_S).
  double lambda = ridge > 0 ? ridge * FrobeniusSq(x) / static_cast<double>(t) : 0.0;
  Gemm(false, false, n, d, t, -1.f, x.data(), t, vs.data(), d, 1.f, y.data(), d);
  // Attention outputs are convex combinations of the rows of V, so a fitted value far outside
  // V's range only comes from an ill-conditioned solve (n ~ t): escalate the ridge until the
  // values are sane, and keep V_S (the limit of an infinite ridge) if none is.
  const float bound = kValueRangeFactor * MaxAbs(head.v, head.T * d);
  std::vector<float> cv(static_cast<size_t>(t * d));
  for (int attempt = 0; attempt < kMaxRidgeEscalations; ++attempt) {
    if (LeastSquares(x.data(), n, t, y.data(), d, lambda, cv.data()).ok()) {
      for (int64_t i = 0; i < t * d; ++i) cv[i] += vs[i];
      if (AllFinite(cv) && MaxAbs(cv.data(), t * d) <= bound) return cv;
    }
    lambda = lambda > 0 ? lambda * 10 : kFirstEscalatedRidge * FrobeniusSq(x) / t;
  }
  return vs;
}

Result<HeadResult> FitAmHead(const AmHead& head, const std::vector<int64_t>& sel_in, int64_t budget,
                             const AmOptions& o, AttentionStats* scratch) {
  const int64_t t = std::clamp<int64_t>(budget, 0, head.T);
  HeadResult r;
  if (t == 0) return r;
  if (head.n <= 0) return Status::InvalidArgument("no fit queries");
  std::vector<int64_t> sel = sel_in;
  if (!sel.empty()) KVC_RETURN_IF_ERROR(CheckSelection(sel, t, head.T));
  const bool self_select = sel.empty() && t < head.T;
  AttentionStats local;
  AttentionStats& st = scratch ? *scratch : local;
  if (self_select || o.fit_beta || o.fit_values) ComputeAttentionStats(head, st);
  if (sel.empty()) {
    if (t == head.T) {
      sel.resize(static_cast<size_t>(t));
      std::iota(sel.begin(), sel.end(), int64_t{0});
    } else if (IsOmp(o.selection)) {
      sel = OmpSelect(st, t, ScheduleFor(o), {}, {}, o.nnls_pg_steps);
    } else {
      sel = TopPositions(HighestAttentionScores(st), t, {});
    }
  }
  const bool omp = IsOmp(o.selection);
  const double lo = omp ? kBetaLoOmp : kBetaLoHighest;
  const double hi = omp ? kBetaHiOmp : kBetaHiHighest;
  std::vector<float> beta(static_cast<size_t>(t), 0.f);
  if (o.fit_beta) {
    KVC_ASSIGN_OR_RETURN(beta, FitBeta(st, sel, lo, hi, o.nnls_pg_steps));
    KVC_RETURN_IF_ERROR(Refine(st, o, lo, hi, sel, beta));
  }
  r.positions = sel;
  r.k = GatherRows(head.k, head.d, sel);
  if (o.fit_values) {
    KVC_ASSIGN_OR_RETURN(r.v, FitValues(head, st, sel, beta, o.ridge));
  } else {
    r.v = GatherRows(head.v, head.d, sel);
  }
  r.beta = std::move(beta);
  return r;
}

Result<LayerResults> AttentionMatchingFit(const PreparedCache& c, const Selection& sel,
                                          const Budgets& budgets, const AmOptions& o,
                                          ThreadPool& pool) {
  const int L = c.layout.n_layers, H = c.layout.n_kv_heads;
  if (static_cast<int>(budgets.size()) != L) {
    return Status::InvalidArgument("AM fit: budgets must have one row per layer");
  }
  for (const auto& row : budgets) {
    if (static_cast<int>(row.size()) != H) {
      return Status::InvalidArgument("AM fit: budgets must have one entry per kv head");
    }
  }
  if (!sel.empty() && static_cast<int>(sel.size()) != L) {
    return Status::InvalidArgument("AM fit: selection must be empty or have one row per layer");
  }
  for (int l = 0; l < L; ++l) {
    if (!c.layers[l].q_fit) {
      return Status::InvalidArgument("attention matching needs fit queries (q_ref) in layer " +
                                     std::to_string(l));
    }
    if (!sel.empty() && static_cast<int>(sel[l].size()) != H) {
      return Status::InvalidArgument("AM fit: selection must have one entry per kv head");
    }
  }
  LayerResults out(static_cast<size_t>(L), std::vector<HeadResult>(static_cast<size_t>(H)));
  static const std::vector<int64_t> kNone;
  std::vector<AttentionStats> scratch(static_cast<size_t>(pool.threads()));
  KVC_RETURN_IF_ERROR(pool.ParallelFor(int64_t{L} * H, [&](int64_t task, int worker) -> Status {
    const int l = static_cast<int>(task / H), h = static_cast<int>(task % H);
    const std::vector<int64_t>& s = sel.empty() ? kNone : sel[l][h];
    Result<HeadResult> r = FitAmHead(MakeAmHead(c, l, h), s, budgets[l][h], o, &scratch[worker]);
    if (!r.ok()) return r.status().WithContext("AM " + Where(l, h));
    out[l][h] = std::move(r).value();
    return Status::OK();
  }));
  return out;
}

Result<LayerResults> AttentionMatchingFit(const PreparedCache& c, const Selection& sel,
                                          const Budgets& budgets, const AmOptions& o) {
  ThreadPool pool(0);
  return AttentionMatchingFit(c, sel, budgets, o, pool);
}

Result<ScoreSet> ScoreHighestAttention(const PreparedCache& c, ThreadPool& pool) {
  const int L = c.layout.n_layers, H = c.layout.n_kv_heads;
  for (int l = 0; l < L; ++l) {
    if (!c.layers[l].q_fit) {
      return Status::InvalidArgument("highest-attention scores need fit queries (q_ref) in layer " +
                                     std::to_string(l));
    }
  }
  ScoreSet s = ScoreSet::Zeros(L, H, c.T());
  std::vector<AttentionStats> scratch(static_cast<size_t>(pool.threads()));
  KVC_RETURN_IF_ERROR(pool.ParallelFor(int64_t{L} * H, [&](int64_t task, int worker) -> Status {
    const int l = static_cast<int>(task / H), h = static_cast<int>(task % H);
    ComputeAttentionStats(MakeAmHead(c, l, h), scratch[worker]);
    const std::vector<float> sc = HighestAttentionScores(scratch[worker]);
    std::copy(sc.begin(), sc.end(), s.at(l, h));
    return Status::OK();
  }));
  return s;
}

Result<ScoreSet> ScoreHighestAttention(const PreparedCache& c) {
  ThreadPool pool(0);
  return ScoreHighestAttention(c, pool);
}

}  // namespace kvc::cpu
