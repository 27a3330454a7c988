#include "tests/harness/eval.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

namespace kvc::harness {
namespace {

void LogSoftmax(const std::vector<float>& logits, std::vector<double>* out) {
  double mx = -std::numeric_limits<double>::infinity();
  for (float x : logits) mx = std::max(mx, static_cast<double>(x));
  double sum = 0.0;
  for (float x : logits) sum += std::exp(x - mx);
  const double lse = mx + std::log(sum);
  out->resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) (*out)[i] = logits[i] - lse;
}

int ArgmaxD(const std::vector<double>& x) {
  return static_cast<int>(std::max_element(x.begin(), x.end()) - x.begin());
}

Status CheckTokens(const std::vector<int>& tokens, int vocab, const char* what) {
  if (tokens.empty()) return Status::InvalidArgument(std::string(what) + " is empty");
  for (int t : tokens) {
    if (t < 0 || t >= vocab) {
      return Status::InvalidArgument(std::string(what) + ": token id " + std::to_string(t) +
                                     " outside [0, " + std::to_string(vocab) + ")");
    }
  }
  return Status::OK();
}

// Accumulates KL, top-1 and NLL of one continuation decoded with `dec` (a copy).
Status ScoreContinuation(Decoder dec, const std::vector<int>& cont,
                         const std::vector<std::vector<double>>& ref_lp, EndToEndMetrics* m,
                         double* nll_full, double* nll_comp) {
  std::vector<float> logits;
  std::vector<double> lp;
  for (size_t i = 0; i < cont.size(); ++i) {
    KVC_RETURN_IF_ERROR(dec.Step(cont[i], &logits));
    LogSoftmax(logits, &lp);
    const std::vector<double>& full = ref_lp[i];
    double kl = 0.0;
    for (size_t j = 0; j < lp.size(); ++j) kl += std::exp(full[j]) * (full[j] - lp[j]);
    kl = std::max(kl, 0.0);  // rounding can make an exact match slightly negative
    m->mean_kl += kl;
    m->max_kl = std::max(m->max_kl, kl);
    m->top1_agreement += ArgmaxD(full) == ArgmaxD(lp) ? 1.0 : 0.0;
    ++m->positions;
    if (i + 1 < cont.size()) {
      *nll_full -= full[cont[i + 1]];
      *nll_comp -= lp[cont[i + 1]];
      ++m->targets;
    }
  }
  return Status::OK();
}

Result<Tensor> AsF32(const Tensor& t) { return t.To(DType::kF32); }

struct HeadScore {
  double cosine = 0.0, rel_l2 = 0.0, mass = 0.0;
};

// Attention output of q over n keys (with optional beta) into out[d]; returns the log-sum-exp.
double Attend(const float* q, const float* k, const float* v, const float* beta, int64_t n, int d,
              std::vector<double>* s, std::vector<double>* out) {
  out->assign(d, 0.0);
  if (n == 0) return -std::numeric_limits<double>::infinity();
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  s->resize(n);
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    double dot = 0.0;
    for (int c = 0; c < d; ++c) dot += double(q[c]) * k[j * d + c];
    (*s)[j] = dot * scale + (beta ? beta[j] : 0.0);
    mx = std::max(mx, (*s)[j]);
  }
  if (std::isinf(mx)) return mx;  // every key masked by beta = -inf
  double sum = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    const double w = std::exp((*s)[j] - mx);
    sum += w;
    for (int c = 0; c < d; ++c) (*out)[c] += w * v[j * d + c];
  }
  for (double& x : *out) x /= sum;
  return mx + std::log(sum);
}

HeadScore CompareOutputs(const std::vector<double>& o, const std::vector<double>& oc, double lse,
                         double lse_c) {
  double dot = 0.0, n1 = 0.0, n2 = 0.0, diff = 0.0;
  for (size_t c = 0; c < o.size(); ++c) {
    dot += o[c] * oc[c];
    n1 += o[c] * o[c];
    n2 += oc[c] * oc[c];
    diff += (o[c] - oc[c]) * (o[c] - oc[c]);
  }
  HeadScore h;
  h.cosine = (n1 > 0.0 && n2 > 0.0) ? dot / std::sqrt(n1 * n2) : 0.0;
  h.rel_l2 = n1 > 0.0 ? std::sqrt(diff / n1) : (n2 > 0.0 ? 1.0 : 0.0);
  h.mass = std::isinf(lse_c) ? 1.0 : std::abs(std::exp(lse_c - lse) - 1.0);
  return h;
}

Status CheckFidelityInputs(const KvCache& full, const std::vector<Tensor>& queries,
                           const CompactedCache& compacted) {
  KVC_RETURN_IF_ERROR(full.Validate(false).WithContext("full cache"));
  KVC_RETURN_IF_ERROR(compacted.Validate().WithContext("compacted cache"));
  const KvLayout& a = full.layout;
  const KvLayout& b = compacted.layout;
  if (a.n_layers != b.n_layers || a.n_kv_heads != b.n_kv_heads || a.n_q_heads != b.n_q_heads ||
      a.head_dim != b.head_dim || a.tokens != b.tokens) {
    return Status::InvalidArgument("compacted layout " + b.ToString() +
                                   " does not match the full cache " + a.ToString());
  }
  if (static_cast<int>(queries.size()) != a.n_layers) {
    return Status::InvalidArgument("queries: " + std::to_string(queries.size()) +
                                   " layers, expected " + std::to_string(a.n_layers));
  }
  for (const Tensor& q : queries) {
    if (q.rank() != 3 || q.dim(0) != a.n_q_heads || q.dim(2) != a.head_dim || q.dim(1) < 1 ||
        !IsFloating(q.dtype())) {
      return Status::InvalidArgument("queries: shape " + ShapeToString(q.shape()) +
                                     ", expected floating [n_q_heads, N >= 1, head_dim]");
    }
  }
  return Status::OK();
}

// Mean scores of the group's queries against one (layer, kv head).
Result<HeadScore> ScoreHead(const Tensor& k, const Tensor& v, const Tensor& q,
                            const CompactedLayer& cl, const Tensor& ck, const Tensor& cv,
                            const KvLayout& L, int h) {
  const int d = L.head_dim;
  const int64_t T = L.tokens, N = q.dim(1);
  const int64_t first = cl.offsets[h], n_c = cl.budget(h);
  const float* kf = k.data<float>() + h * T * d;
  const float* vf = v.data<float>() + h * T * d;
  std::vector<double> s, o, oc;
  HeadScore sum;
  for (int qh = h * L.group(); qh < (h + 1) * L.group(); ++qh) {
    for (int64_t i = 0; i < N; ++i) {
      const float* qi = q.data<float>() + (qh * N + i) * d;
      const double lse = Attend(qi, kf, vf, nullptr, T, d, &s, &o);
      const double lse_c = Attend(qi, ck.data<float>() + first * d, cv.data<float>() + first * d,
                                  cl.beta.data<float>() + first, n_c, d, &s, &oc);
      const HeadScore one = CompareOutputs(o, oc, lse, lse_c);
      sum.cosine += one.cosine;
      sum.rel_l2 += one.rel_l2;
      sum.mass += one.mass;
    }
  }
  const double n = static_cast<double>(N) * L.group();
  return HeadScore{sum.cosine / n, sum.rel_l2 / n, sum.mass / n};
}

void Summarise(std::vector<HeadScore> heads, AttentionFidelity* f) {
  f->heads = static_cast<int64_t>(heads.size());
  std::vector<double> cos;
  for (const HeadScore& h : heads) {
    cos.push_back(h.cosine);
    f->mean_cosine += h.cosine;
    f->mean_rel_l2 += h.rel_l2;
    f->mean_mass_error += h.mass;
  }
  const double n = static_cast<double>(heads.size());
  f->mean_cosine /= n;
  f->mean_rel_l2 /= n;
  f->mean_mass_error /= n;
  std::sort(cos.begin(), cos.end());
  f->min_cosine = cos.front();
  const size_t rank = static_cast<size_t>(std::ceil(0.1 * n));
  f->p10_cosine = cos[rank == 0 ? 0 : rank - 1];
}

void CopyRow(const Tensor& src, int64_t row, Tensor* dst, int64_t dst_row, int d) {
  const size_t bytes = static_cast<size_t>(d) * DTypeSize(src.dtype());
  std::memcpy(static_cast<uint8_t*>(dst->raw()) + dst_row * bytes,
              static_cast<const uint8_t*>(src.raw()) + row * bytes, bytes);
}

}  // namespace

Result<FullReference> ComputeFullReference(const Llama2Model& model,
                                           const std::vector<int>& context,
                                           const std::vector<std::vector<int>>& continuations) {
  const int vocab = model.config().vocab_size;
  KVC_RETURN_IF_ERROR(CheckTokens(context, vocab, "context"));
  if (continuations.empty()) return Status::InvalidArgument("no continuations to evaluate");
  for (const auto& c : continuations) KVC_RETURN_IF_ERROR(CheckTokens(c, vocab, "continuation"));
  Decoder dec(model);
  std::vector<float> logits;
  for (int t : context) KVC_RETURN_IF_ERROR(dec.Step(t, &logits));
  FullReference ref;
  ref.context_tokens = static_cast<int64_t>(context.size());
  ref.continuations = continuations;
  ref.log_probs.resize(continuations.size());
  for (size_t c = 0; c < continuations.size(); ++c) {
    Decoder d = dec;
    for (int t : continuations[c]) {
      KVC_RETURN_IF_ERROR(d.Step(t, &logits));
      ref.log_probs[c].emplace_back();
      LogSoftmax(logits, &ref.log_probs[c].back());
    }
  }
  return ref;
}

Result<EndToEndMetrics> EvaluateAgainst(const Llama2Model& model, const FullReference& ref,
                                        const CompactedCache& compacted) {
  if (compacted.layout.tokens != ref.context_tokens) {
    return Status::InvalidArgument(
        "compacted cache stands for " + std::to_string(compacted.layout.tokens) +
        " source tokens, the reference context has " + std::to_string(ref.context_tokens));
  }
  if (ref.continuations.empty() || ref.log_probs.size() != ref.continuations.size()) {
    return Status::InvalidArgument(
        "full reference holds no continuations (use ComputeFullReference)");
  }
  KVC_ASSIGN_OR_RETURN(Decoder dec, Decoder::WithPrefix(model, compacted));
  EndToEndMetrics m;
  double nll_full = 0.0, nll_comp = 0.0;
  for (size_t c = 0; c < ref.continuations.size(); ++c) {
    KVC_RETURN_IF_ERROR(
        ScoreContinuation(dec, ref.continuations[c], ref.log_probs[c], &m, &nll_full, &nll_comp));
  }
  m.mean_kl /= static_cast<double>(m.positions);
  m.top1_agreement /= static_cast<double>(m.positions);
  const double targets = static_cast<double>(std::max<int64_t>(m.targets, 1));
  m.ppl_full = std::exp(nll_full / targets);
  m.ppl_compacted = std::exp(nll_comp / targets);
  return m;
}

Result<EndToEndMetrics> EvaluateEndToEnd(const Llama2Model& model, const std::vector<int>& context,
                                         const CompactedCache& compacted,
                                         const std::vector<std::vector<int>>& continuations) {
  KVC_ASSIGN_OR_RETURN(FullReference ref, ComputeFullReference(model, context, continuations));
  return EvaluateAgainst(model, ref, compacted);
}

Result<AttentionFidelity> MeasureAttentionFidelity(const KvCache& full,
                                                   const std::vector<Tensor>& queries,
                                                   const CompactedCache& compacted) {
  KVC_RETURN_IF_ERROR(CheckFidelityInputs(full, queries, compacted));
  const KvLayout& L = full.layout;
  std::vector<HeadScore> heads;
  for (int l = 0; l < L.n_layers; ++l) {
    KVC_ASSIGN_OR_RETURN(Tensor k, AsF32(full.layers[l].k));
    KVC_ASSIGN_OR_RETURN(Tensor v, AsF32(full.layers[l].v));
    KVC_ASSIGN_OR_RETURN(Tensor q, AsF32(queries[l]));
    const CompactedLayer& cl = compacted.layers[l];
    KVC_ASSIGN_OR_RETURN(Tensor ck, AsF32(cl.k));
    KVC_ASSIGN_OR_RETURN(Tensor cv, AsF32(cl.v));
    for (int h = 0; h < L.n_kv_heads; ++h) {
      KVC_ASSIGN_OR_RETURN(HeadScore s, ScoreHead(k, v, q, cl, ck, cv, L, h));
      heads.push_back(s);
    }
  }
  AttentionFidelity f;
  Summarise(std::move(heads), &f);
  return f;
}

Result<CompactedCache> GatherCompaction(
    const KvCache& full, const std::vector<std::vector<std::vector<int64_t>>>& keep) {
  KVC_RETURN_IF_ERROR(full.Validate(false).WithContext("full cache"));
  const KvLayout& L = full.layout;
  if (static_cast<int>(keep.size()) != L.n_layers) {
    return Status::InvalidArgument("keep: " + std::to_string(keep.size()) + " layers, expected " +
                                   std::to_string(L.n_layers));
  }
  CompactedCache out;
  out.layout = L;
  out.metadata["method"] = "harness-gather";
  for (int l = 0; l < L.n_layers; ++l) {
    if (static_cast<int>(keep[l].size()) != L.n_kv_heads) {
      return Status::InvalidArgument("keep[" + std::to_string(l) +
                                     "]: " + std::to_string(keep[l].size()) + " heads, expected " +
                                     std::to_string(L.n_kv_heads));
    }
    CompactedLayer cl;
    cl.offsets.push_back(0);
    for (const auto& pos : keep[l]) {
      if (static_cast<int64_t>(pos.size()) > L.tokens) {
        return Status::InvalidArgument("keep: a head keeps more than T entries");
      }
      cl.offsets.push_back(cl.offsets.back() + static_cast<int64_t>(pos.size()));
    }
    cl.k = Tensor::Empty(L.dtype, {cl.total(), L.head_dim});
    cl.v = Tensor::Empty(L.dtype, {cl.total(), L.head_dim});
    cl.beta = Tensor::Zeros(DType::kF32, {cl.total()});
    for (int h = 0; h < L.n_kv_heads; ++h) {
      for (size_t i = 0; i < keep[l][h].size(); ++i) {
        const int64_t p = keep[l][h][i];
        if (p < 0 || p >= L.tokens) {
          return Status::InvalidArgument("keep: position " + std::to_string(p) + " outside [0, " +
                                         std::to_string(L.tokens) + ")");
        }
        CopyRow(full.layers[l].k, h * L.tokens + p, &cl.k, cl.offsets[h] + i, L.head_dim);
        CopyRow(full.layers[l].v, h * L.tokens + p, &cl.v, cl.offsets[h] + i, L.head_dim);
      }
    }
    out.layers.push_back(std::move(cl));
  }
  KVC_RETURN_IF_ERROR(out.Validate().WithContext("gathered compaction"));
  return out;
}

Result<CompactedCache> KeepAllCompaction(const KvCache& full) {
  std::vector<int64_t> all(static_cast<size_t>(std::max<int64_t>(full.layout.tokens, 0)));
  std::iota(all.begin(), all.end(), int64_t{0});
  return KeepPositionsCompaction(full, all);
}

Result<CompactedCache> KeepPositionsCompaction(const KvCache& full,
                                               const std::vector<int64_t>& positions) {
  const int L = std::max(full.layout.n_layers, 0), H = std::max(full.layout.n_kv_heads, 0);
  std::vector<std::vector<std::vector<int64_t>>> keep(
      L, std::vector<std::vector<int64_t>>(H, positions));
  return GatherCompaction(full, keep);
}

}  // namespace kvc::harness
