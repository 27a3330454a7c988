#include "kernels/fidelity.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "kernels/cpu/fidelity_eval.h"
#include "kernels/cpu/linalg.h"
#include "kernels/cpu/thread_pool.h"

namespace kvc {
namespace {

// Linear interpolation between order statistics of sorted values (q in [0, 1]).
double Quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0.0;
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return sorted[lo] + frac * (sorted[hi] - sorted[lo]);
}

FidelityStats StatsOf(std::vector<double> v) {
  FidelityStats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  s.min = v.front();
  s.max = v.back();
  s.p10 = Quantile(v, 0.1);
  s.p90 = Quantile(v, 0.9);
  return s;
}

FidelitySummary Summarize(const std::vector<const HeadFidelity*>& heads) {
  std::vector<double> cos, rel, mass;
  for (const HeadFidelity* h : heads) {
    cos.push_back(h->cosine);
    rel.push_back(h->rel_l2);
    mass.push_back(h->mass_error);
  }
  FidelitySummary s;
  s.heads = static_cast<int64_t>(heads.size());
  s.cosine = StatsOf(std::move(cos));
  s.rel_l2 = StatsOf(std::move(rel));
  s.mass_error = StatsOf(std::move(mass));
  return s;
}

nlohmann::ordered_json StatsJson(const FidelityStats& s) {
  return {{"mean", s.mean}, {"min", s.min}, {"p10", s.p10}, {"p90", s.p90}, {"max", s.max}};
}

nlohmann::ordered_json SummaryJson(const FidelitySummary& s) {
  return {{"heads", s.heads},
          {"cosine", StatsJson(s.cosine)},
          {"rel_l2", StatsJson(s.rel_l2)},
          {"mass_error", StatsJson(s.mass_error)}};
}

std::string Row(const std::string& label, const FidelitySummary& s) {
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "%6s %6lld  %9.6f %9.6f %9.6f  %9.6f %9.6f %9.6f  %9.6f %9.6f %9.6f\n",
                label.c_str(), static_cast<long long>(s.heads), s.cosine.mean, s.cosine.min,
                s.cosine.p10, s.rel_l2.mean, s.rel_l2.p90, s.rel_l2.max, s.mass_error.mean,
                s.mass_error.p90, s.mass_error.max);
  return buf;
}

// The metrics of one query head over its N held-out queries.
struct QueryBlock {
  const float* q;   // [N, d]
  const float* k;   // [T, d]
  const float* v;   // [T, d]
  const float* kc;  // [t, d]
  const float* vc;  // [t, d]
  const float* beta;
  int64_t N, T, t;
  int d;
};

// Attention output rows out [N, d] and log-sum-exp per row for keys [m, d] (+ bias).
void Attend(const float* q, int64_t N, int d, const float* k, const float* v, const float* bias,
            int64_t m, float* out, double* lse) {
  std::vector<float> s(static_cast<size_t>(N * m));
  cpu::Gemm(false, true, N, m, d, 1.f / std::sqrt(static_cast<float>(d)), q, d, k, d, 0.f, s.data(),
            m);
  if (bias) {
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t j = 0; j < m; ++j) s[i * m + j] += bias[j];
    }
  }
  cpu::SoftmaxRows(s.data(), N, m, m, lse);
  cpu::Gemm(false, false, N, d, m, 1.f, s.data(), m, v, d, 0.f, out, d);
}

HeadFidelity MeasureHead(const QueryBlock& b) {
  const int64_t N = b.N;
  const int d = b.d;
  std::vector<float> o(static_cast<size_t>(N * d)), c(static_cast<size_t>(N * d), 0.f);
  std::vector<double> lse(static_cast<size_t>(N)), lse_c(static_cast<size_t>(N));
  Attend(b.q, N, d, b.k, b.v, nullptr, b.T, o.data(), lse.data());
  if (b.t > 0) Attend(b.q, N, d, b.kc, b.vc, b.beta, b.t, c.data(), lse_c.data());
  HeadFidelity h;
  for (int64_t i = 0; i < N; ++i) {
    double oo = 0, cc = 0, oc = 0, diff = 0;
    for (int j = 0; j < d; ++j) {
      const double x = o[i * d + j], y = c[i * d + j];
      oo += x * x;
      cc += y * y;
      oc += x * y;
      diff += (x - y) * (x - y);
    }
    h.cosine += (oo > 0 && cc > 0) ? oc / std::sqrt(oo * cc) : 0.0;
    h.rel_l2 += oo > 0 ? std::sqrt(diff / oo) : std::sqrt(cc);
    h.mass_error += b.t > 0 ? std::fabs(std::exp(lse_c[i] - lse[i]) - 1.0) : 1.0;
  }
  const double inv = N > 0 ? 1.0 / static_cast<double>(N) : 0.0;
  h.cosine *= inv;
  h.rel_l2 *= inv;
  h.mass_error *= inv;
  return h;
}

Status CheckLayouts(const KvCache& full, const CompactedCache& compacted,
                    const std::vector<Tensor>& queries) {
  KVC_RETURN_IF_ERROR(full.Validate(true).WithContext("full cache"));
  KVC_RETURN_IF_ERROR(compacted.Validate().WithContext("compacted cache"));
  const KvLayout& a = full.layout;
  const KvLayout& b = compacted.layout;
  if (a.n_layers != b.n_layers || a.n_kv_heads != b.n_kv_heads || a.n_q_heads != b.n_q_heads ||
      a.head_dim != b.head_dim || a.tokens != b.tokens) {
    return Status::InvalidArgument("compacted layout " + b.ToString() +
                                   " does not match the full cache " + a.ToString());
  }
  if (static_cast<int>(queries.size()) != a.n_layers) {
    return Status::InvalidArgument("queries: " + std::to_string(queries.size()) + " tensors for " +
                                   std::to_string(a.n_layers) + " layers");
  }
  for (int l = 0; l < a.n_layers; ++l) {
    const Tensor& q = queries[l];
    const std::string where = "queries of layer " + std::to_string(l);
    if (!IsFloating(q.dtype()) || q.rank() != 3 || q.dim(0) != a.n_q_heads ||
        q.dim(2) != a.head_dim || q.dim(1) <= 0 || q.dim(1) != queries[0].dim(1)) {
      return Status::InvalidArgument(where + ": shape " + ShapeToString(q.shape()) +
                                     ", expected floating [" + std::to_string(a.n_q_heads) +
                                     ", N, " + std::to_string(a.head_dim) + "], same N everywhere");
    }
    if (!q.AllFinite()) return Status::InvalidArgument(where + ": NaN or Inf");
  }
  return Status::OK();
}

}  // namespace

FidelityReport SummarizeFidelity(std::vector<HeadFidelity> heads, int n_layers,
                                 int64_t queries_per_head) {
  std::sort(heads.begin(), heads.end(), [](const HeadFidelity& x, const HeadFidelity& y) {
    return x.layer != y.layer ? x.layer < y.layer : x.q_head < y.q_head;
  });
  FidelityReport r;
  r.queries_per_head = queries_per_head;
  r.heads = std::move(heads);
  std::vector<const HeadFidelity*> all;
  std::vector<std::vector<const HeadFidelity*>> per(static_cast<size_t>(std::max(n_layers, 0)));
  for (const HeadFidelity& h : r.heads) {
    all.push_back(&h);
    if (h.layer >= 0 && h.layer < n_layers) per[h.layer].push_back(&h);
  }
  for (const auto& p : per) r.layers.push_back(Summarize(p));
  r.overall = Summarize(all);
  return r;
}

std::string FidelityReport::ToText() const {
  std::string s =
      "fidelity on " + std::to_string(queries_per_head) + " held-out queries per query head\n";
  s += " layer  heads   cos_mean   cos_min   cos_p10   rel_mean   rel_p90   rel_max  "
       "mass_mean  mass_p90  mass_max\n";
  for (size_t l = 0; l < layers.size(); ++l) s += Row(std::to_string(l), layers[l]);
  s += Row("all", overall);
  return s;
}

std::string FidelityReport::ToJson(bool with_heads) const {
  nlohmann::ordered_json j;
  j["queries_per_head"] = queries_per_head;
  j["overall"] = SummaryJson(overall);
  nlohmann::ordered_json layer_list = nlohmann::ordered_json::array();
  for (const FidelitySummary& s : layers) layer_list.push_back(SummaryJson(s));
  j["layers"] = std::move(layer_list);
  if (with_heads) {
    nlohmann::ordered_json hs = nlohmann::ordered_json::array();
    for (const HeadFidelity& h : heads) {
      hs.push_back({{"layer", h.layer},
                    {"q_head", h.q_head},
                    {"kv_head", h.kv_head},
                    {"cosine", h.cosine},
                    {"rel_l2", h.rel_l2},
                    {"mass_error", h.mass_error}});
    }
    j["heads"] = std::move(hs);
  }
  return j.dump();
}

Result<FidelityReport> EvaluateFidelity(const KvCache& full, const CompactedCache& compacted,
                                        const std::vector<Tensor>& queries, int threads) {
  KVC_RETURN_IF_ERROR(CheckLayouts(full, compacted, queries));
  std::vector<Tensor> k, v, q;
  for (int l = 0; l < full.layout.n_layers; ++l) {
    KVC_ASSIGN_OR_RETURN(Tensor kl, full.layers[l].k.To(DType::kF32));
    KVC_ASSIGN_OR_RETURN(Tensor vl, full.layers[l].v.To(DType::kF32));
    KVC_ASSIGN_OR_RETURN(Tensor ql, queries[l].To(DType::kF32));
    k.push_back(std::move(kl));
    v.push_back(std::move(vl));
    q.push_back(std::move(ql));
  }
  cpu::ScopedBlasThreads blas(1);
  cpu::ThreadPool pool(threads);
  return cpu::EvaluateFidelityF32(full.layout, k, v, compacted, q, pool);
}

namespace cpu {

Result<FidelityReport> EvaluateFidelityF32(const KvLayout& layout,
                                           const std::vector<Tensor>& k_full,
                                           const std::vector<Tensor>& v_full,
                                           const CompactedCache& compacted,
                                           const std::vector<Tensor>& queries, ThreadPool& pool) {
  const int L = layout.n_layers, Hq = layout.n_q_heads, g = layout.group(), d = layout.head_dim;
  const int64_t T = layout.tokens;
  std::vector<Tensor> kc, vc;
  for (const CompactedLayer& cl : compacted.layers) {
    KVC_ASSIGN_OR_RETURN(Tensor a, cl.k.To(DType::kF32));
    KVC_ASSIGN_OR_RETURN(Tensor b, cl.v.To(DType::kF32));
    kc.push_back(std::move(a));
    vc.push_back(std::move(b));
  }
  const int64_t N = queries.empty() ? 0 : queries[0].dim(1);
  std::vector<HeadFidelity> heads(static_cast<size_t>(L) * Hq);
  KVC_RETURN_IF_ERROR(pool.ParallelFor(int64_t{L} * Hq, [&](int64_t task) -> Status {
    const int l = static_cast<int>(task / Hq), hq = static_cast<int>(task % Hq), h = hq / g;
    const CompactedLayer& cl = compacted.layers[l];
    QueryBlock b;
    b.q = queries[l].data<float>() + static_cast<size_t>(hq) * N * d;
    b.k = k_full[l].data<float>() + static_cast<size_t>(h) * T * d;
    b.v = v_full[l].data<float>() + static_cast<size_t>(h) * T * d;
    b.kc = kc[l].data<float>() + static_cast<size_t>(cl.offsets[h]) * d;
    b.vc = vc[l].data<float>() + static_cast<size_t>(cl.offsets[h]) * d;
    b.beta = cl.beta.data<float>() + cl.offsets[h];
    b.N = N;
    b.T = T;
    b.t = cl.budget(h);
    b.d = d;
    HeadFidelity r = MeasureHead(b);
    r.layer = l;
    r.q_head = hq;
    r.kv_head = h;
    heads[task] = r;
    return Status::OK();
  }));
  return SummarizeFidelity(std::move(heads), L, N);
}

}  // namespace cpu
}  // namespace kvc
