#include "tests/synth/synth_head.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/dtype.h"
#include "tests/synth/synth_random.h"

namespace kvc::synth_detail {
namespace {

// Key-side scales (pre-RoPE). Query amplitudes are derived from them so that each component's
// logit q.k / sqrt(d) is the one the options ask for.
constexpr float kKeyMeanNorm = 1.5f;    // norm of a topic's mean coordinates
constexpr float kKeyCoordStd = 1.0f;    // std of the AR(1) topic coordinates
constexpr float kKeyPosAmp = 1.0f;      // positional (recency) component
constexpr float kKeySinkAmp = 4.0f;     // sink component of sink keys
constexpr float kKeyHeavyAmp = 2.0f;    // heavy-hitter component (x amplitude 0.7..1.3)
constexpr float kKeyNoiseStd = 0.2f;    // isotropic noise per element
constexpr float kValueMeanNorm = 1.0f;  // values: same construction, no RoPE
constexpr float kValueCoordStd = 1.0f;
constexpr float kValueNoiseStd = 0.2f;
constexpr float kSinkValueScale = 0.25f;  // sink values are small: attending to them is a no-op
constexpr float kQueryNoiseStd = 0.3f;
constexpr float kQueryPreferShare = 0.4f;   // share of content variance fixed per query head
constexpr float kEarlySinkShift = -1.5f;    // early layers: weaker sinks ...
constexpr float kEarlyRecencyScale = 1.5f;  // ... and stronger recency

struct HeadModel {
  int d = 0;
  int r = 0;
  std::vector<float> sink, heavy, pos;  // [d] unit pre-RoPE directions
  std::vector<float> kbasis;            // [n_topics][r][d], orthonormal rows per topic
  std::vector<float> kmean;             // [n_topics][r]
  std::vector<float> vbasis;            // [n_topics][r][d]
  std::vector<float> vmean;             // [n_topics][r]
  float content_scale = 1;
  float recency_scale = 1;
  float sink_shift = 0;

  float* KBasis(int topic, int i) { return kbasis.data() + (topic * r + i) * d; }
  const float* KBasis(int topic, int i) const { return kbasis.data() + (topic * r + i) * d; }
  float* VBasis(int topic, int i) { return vbasis.data() + (topic * r + i) * d; }
  const float* VBasis(int topic, int i) const { return vbasis.data() + (topic * r + i) * d; }
};

struct QueryProfile {
  std::vector<float> base;    // [d] sink + heavy + positional components, pre-RoPE
  float focus_gain = 0;       // times the mean coordinates of the row's topic
  float coord_std = 0;        // std of each row's own topic coordinates
  std::vector<float> prefer;  // [n_topics][r] this query head's preferred coordinates
};

inline void Axpy(float a, const float* x, float* y, int d) {
  for (int j = 0; j < d; ++j) y[j] += a * x[j];
}

// A unit vector drawn with per-element std `weight`, orthogonal to the unit vectors `against`.
void RandomDirection(Rng& rng, const std::vector<float>& weight,
                     const std::vector<const float*>& against, float* out) {
  const int d = static_cast<int>(weight.size());
  for (int attempt = 0;; ++attempt) {
    double norm0 = 0;
    for (int j = 0; j < d; ++j) {
      out[j] = rng.Normal() * weight[j];
      norm0 += static_cast<double>(out[j]) * out[j];
    }
    for (int pass = 0; pass < 2; ++pass) {  // twice: re-orthogonalisation for accuracy
      for (const float* u : against) {
        double dot = 0;
        for (int j = 0; j < d; ++j) dot += static_cast<double>(out[j]) * u[j];
        Axpy(static_cast<float>(-dot), u, out, d);
      }
    }
    double norm = 0;
    for (int j = 0; j < d; ++j) norm += static_cast<double>(out[j]) * out[j];
    norm = std::sqrt(norm);
    if (norm > 0.05 * std::sqrt(norm0) || attempt == 15) {
      const float inv = norm > 0 ? static_cast<float>(1.0 / norm) : 0.0f;
      for (int j = 0; j < d; ++j) out[j] *= inv;
      return;
    }
  }
}

void RandomVector(Rng& rng, float norm, float* out, int n) {
  double sq = 0;
  for (int i = 0; i < n; ++i) {
    out[i] = rng.Normal();
    sq += static_cast<double>(out[i]) * out[i];
  }
  const float scale = sq > 0 ? static_cast<float>(norm / std::sqrt(sq)) : 0.0f;
  for (int i = 0; i < n; ++i) out[i] *= scale;
}

// Per-element weights from the RoPE coherence of each element's pair: content and heavy
// hitters in pairs that stay coherent over the context, sinks in the most coherent ones,
// the positional component in the pairs that rotate (the source of RoPE's decay).
struct DimWeights {
  std::vector<float> content, sink, heavy, pos, flat;
};

DimWeights MakeWeights(const Plan& plan) {
  DimWeights w;
  for (int j = 0; j < plan.d; ++j) {
    const double c = plan.coherence[j / 2];
    w.content.push_back(static_cast<float>(std::sqrt(0.1 + c)));
    w.sink.push_back(static_cast<float>(0.02 + c * c * c * c));
    w.heavy.push_back(static_cast<float>(0.05 + c));
    w.pos.push_back(static_cast<float>(0.02 + (1.0 - c)));
    w.flat.push_back(1.0f);
  }
  return w;
}

HeadModel MakeHeadModel(const Plan& plan, int layer, int kv_head) {
  const SynthOptions& o = plan.opts;
  HeadModel m;
  m.d = plan.d;
  m.r = plan.rank;
  Rng rng(StreamKey(o.seed,
                    {kStreamModel, static_cast<uint64_t>(layer), static_cast<uint64_t>(kv_head)}));
  const DimWeights w = MakeWeights(plan);
  m.sink.resize(m.d);
  m.heavy.resize(m.d);
  m.pos.resize(m.d);
  RandomDirection(rng, w.sink, {}, m.sink.data());
  RandomDirection(rng, w.heavy, {m.sink.data()}, m.heavy.data());
  RandomDirection(rng, w.pos, {m.sink.data(), m.heavy.data()}, m.pos.data());
  m.kbasis.resize(static_cast<size_t>(plan.n_topics) * m.r * m.d);
  m.vbasis.resize(m.kbasis.size());
  m.kmean.resize(static_cast<size_t>(plan.n_topics) * m.r);
  m.vmean.resize(m.kmean.size());
  for (int t = 0; t < plan.n_topics; ++t) {
    std::vector<const float*> k_against{m.sink.data(), m.heavy.data(), m.pos.data()};
    std::vector<const float*> v_against;
    for (int i = 0; i < m.r; ++i) {
      RandomDirection(rng, w.content, k_against, m.KBasis(t, i));
      k_against.push_back(m.KBasis(t, i));
      RandomDirection(rng, w.flat, v_against, m.VBasis(t, i));
      v_against.push_back(m.VBasis(t, i));
    }
    RandomVector(rng, kKeyMeanNorm, m.kmean.data() + t * m.r, m.r);
    RandomVector(rng, kValueMeanNorm, m.vmean.data() + t * m.r, m.r);
  }
  m.content_scale = static_cast<float>(rng.Uniform(0.8, 1.25));
  m.recency_scale = static_cast<float>(rng.Uniform(0.5, 1.5));
  const int n_layers = o.layout.n_layers;
  if (n_layers >= 2 && layer < std::max(1, n_layers / 16)) {
    m.sink_shift = kEarlySinkShift;
    m.recency_scale *= kEarlyRecencyScale;
  }
  return m;
}

// Removes from the topic coordinates x their component along the topic mean.
void RemoveMeanComponent(const float* mean, float* x, int r) {
  double dot = 0;
  double sq = 0;
  for (int i = 0; i < r; ++i) {
    dot += static_cast<double>(x[i]) * mean[i];
    sq += static_cast<double>(mean[i]) * mean[i];
  }
  if (sq > 0) Axpy(static_cast<float>(-dot / sq), mean, x, r);
}

QueryProfile MakeQueryProfile(const Plan& plan, const HeadModel& m, int layer, int kv_head,
                              int q_in_group) {
  const SynthOptions& o = plan.opts;
  Rng rng(StreamKey(o.seed, {kStreamQueryProfile, static_cast<uint64_t>(layer),
                             static_cast<uint64_t>(kv_head), static_cast<uint64_t>(q_in_group)}));
  const double sqrt_d = std::sqrt(static_cast<double>(m.d));
  const double sink_jitter = rng.Uniform(-1.0, 1.0);
  const double sink_logit = o.n_sinks > 0 ? std::log(static_cast<double>(plan.T) / o.n_sinks) +
                                                o.sink_bias + m.sink_shift + sink_jitter
                                          : 0.0;
  const double heavy_logit = o.heavy_hitter_logit * rng.Uniform(0.6, 1.4);
  const double recency_logit = o.recency_logit * m.recency_scale * rng.Uniform(0.8, 1.2);
  const double content_std = o.content_logit_std * m.content_scale * rng.Uniform(0.9, 1.1);
  const double gap = o.topic_logit_gap * rng.Uniform(0.8, 1.2);

  QueryProfile p;
  p.base.assign(m.d, 0.0f);
  Axpy(static_cast<float>(sink_logit * sqrt_d / kKeySinkAmp), m.sink.data(), p.base.data(), m.d);
  Axpy(static_cast<float>(heavy_logit * sqrt_d / kKeyHeavyAmp), m.heavy.data(), p.base.data(), m.d);
  Axpy(static_cast<float>(recency_logit * sqrt_d / kKeyPosAmp), m.pos.data(), p.base.data(), m.d);
  // Coordinates q_c = g * mean + prefer + own: the logit's std over the keys of the topic is
  // |q_c| * kKeyCoordStd / sqrt(d) = content_std, its mean advantage
  // g * kKeyMeanNorm^2 / sqrt(d) = gap.
  const double g = gap * sqrt_d / kKeyMeanNorm / kKeyMeanNorm;
  p.focus_gain = static_cast<float>(g);
  const double total = content_std * sqrt_d / kKeyCoordStd;
  const double rest = std::max(0.0, total * total - (g * kKeyMeanNorm) * (g * kKeyMeanNorm));
  // The random parts are orthogonal to the topic mean (see RemoveMeanComponent): they live in
  // r - 1 dimensions and leave the topic's mean logit at exactly `gap`.
  const int free_dims = std::max(1, m.r - 1);
  const float prefer_std = static_cast<float>(std::sqrt(kQueryPreferShare * rest / free_dims));
  p.coord_std = static_cast<float>(std::sqrt((1.0 - kQueryPreferShare) * rest / free_dims));
  p.prefer.resize(static_cast<size_t>(plan.n_topics) * m.r);
  for (float& x : p.prefer) x = prefer_std * rng.Normal();
  for (int t = 0; t < plan.n_topics; ++t) {
    RemoveMeanComponent(m.kmean.data() + t * m.r, p.prefer.data() + t * m.r, m.r);
  }
  return p;
}

void ApplyRope(const float* cos_sin, float* x, int pairs) {
  for (int i = 0; i < pairs; ++i) {
    const float c = cos_sin[2 * i];
    const float s = cos_sin[2 * i + 1];
    const float x0 = x[2 * i];
    const float x1 = x[2 * i + 1];
    x[2 * i] = x0 * c - x1 * s;
    x[2 * i + 1] = x0 * s + x1 * c;
  }
}

// FloatToHalf over a row, with a branch-free loop (the same rounding formula) for values whose
// half is a normal number; the rare others (tiny, huge, NaN) go through FloatToHalf.
void StoreHalfRow(const float* x, uint16_t* out, int d) {
  constexpr uint32_t kMinNormal = 0x38800000u;  // 2^-14 as f32 bits
  constexpr uint32_t kOverflow = 0x477ff000u;   // rounds to >= 65520
  uint32_t outside = 0;
  for (int j = 0; j < d; ++j) {
    const uint32_t u = FloatBits(x[j]);
    const uint32_t abs = u & 0x7fffffffu;
    outside |= static_cast<uint32_t>(abs - kMinNormal >= kOverflow - kMinNormal);
    const uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u) - 0x38000000u;
    out[j] = static_cast<uint16_t>(((u >> 16) & 0x8000u) | ((rounded >> 13) & 0x7fffu));
  }
  if (outside == 0) return;
  for (int j = 0; j < d; ++j) {
    const uint32_t abs = FloatBits(x[j]) & 0x7fffffffu;
    if (abs - kMinNormal >= kOverflow - kMinNormal) out[j] = FloatToHalf(x[j]);
  }
}

void StoreRow(DType dtype, void* base, int64_t row, const float* x, int d) {
  const int64_t off = row * d;
  switch (dtype) {
    case DType::kF16:
      StoreHalfRow(x, static_cast<uint16_t*>(base) + off, d);
      break;
    case DType::kBF16: {
      uint16_t* out = static_cast<uint16_t*>(base) + off;
      for (int j = 0; j < d; ++j) out[j] = FloatToBf16(x[j]);
      break;
    }
    default:
      std::memcpy(static_cast<float*>(base) + off, x, sizeof(float) * d);
      break;
  }
}

// Keys (post-RoPE) when `keys`, else values: topic subspace + AR(1) coordinates + noise.
void GenerateKv(const Plan& plan, const HeadModel& m, int layer, int kv_head, bool keys,
                void* out) {
  const SynthOptions& o = plan.opts;
  const int d = m.d;
  const int r = m.r;
  Rng rng(StreamKey(o.seed, {keys ? kStreamKeys : kStreamValues, static_cast<uint64_t>(layer),
                             static_cast<uint64_t>(kv_head)}));
  const uint64_t hh_key = HeavyHitterKey(o.seed, layer, kv_head);
  const float rho = static_cast<float>(o.key_autocorr);
  const float innov = static_cast<float>(std::sqrt(1.0 - o.key_autocorr * o.key_autocorr));
  const float coord_std = keys ? kKeyCoordStd : kValueCoordStd;
  const float noise_std = keys ? kKeyNoiseStd : kValueNoiseStd;
  std::vector<float> coord(r), step(r), row(d), noise(d);
  rng.Normals(coord.data(), r);  // start in the stationary distribution
  for (int64_t t = 0; t < plan.T; ++t) {
    const int topic = plan.topic_of[t];
    rng.Normals(step.data(), r);
    for (int i = 0; i < r; ++i) coord[i] = rho * coord[i] + innov * step[i];
    const float* mean = (keys ? m.kmean.data() : m.vmean.data()) + topic * r;
    if (keys) {
      for (int j = 0; j < d; ++j) row[j] = kKeyPosAmp * m.pos[j];
    } else {
      std::fill(row.begin(), row.end(), 0.0f);
    }
    for (int i = 0; i < r; ++i) {
      const float* basis = keys ? m.KBasis(topic, i) : m.VBasis(topic, i);
      Axpy(mean[i] + coord_std * coord[i], basis, row.data(), d);
    }
    float amp = 0;
    if (keys && t < o.n_sinks) {
      Axpy(kKeySinkAmp, m.sink.data(), row.data(), d);
    } else if (keys && IsHeavyHitter(hh_key, t, o.n_sinks, o.heavy_hitter_fraction, &amp)) {
      Axpy(kKeyHeavyAmp * amp, m.heavy.data(), row.data(), d);
    }
    rng.Normals(noise.data(), d);
    Axpy(noise_std, noise.data(), row.data(), d);
    if (keys) {
      ApplyRope(plan.RopeRow(t), row.data(), plan.pairs);
    } else if (t < o.n_sinks) {
      for (float& x : row) x *= kSinkValueScale;
    }
    StoreRow(o.layout.dtype, out, t, row.data(), d);
  }
}

// Rows of one query kind for every query head of the group.
void GenerateQueries(const Plan& plan, const HeadModel& m, int layer, int kv_head, QueryKind kind,
                     const std::vector<int64_t>& positions, const std::vector<int>& topics,
                     void* out) {
  const SynthOptions& o = plan.opts;
  const int d = m.d;
  const int r = m.r;
  const int64_t rows = static_cast<int64_t>(positions.size());
  std::vector<float> own(r), row(d), noise(d);
  for (int j = 0; j < o.layout.group(); ++j) {
    const QueryProfile p = MakeQueryProfile(plan, m, layer, kv_head, j);
    Rng rng(StreamKey(o.seed, {kStreamQueryRows, kind, static_cast<uint64_t>(layer),
                               static_cast<uint64_t>(kv_head), static_cast<uint64_t>(j)}));
    for (int64_t i = 0; i < rows; ++i) {
      const int topic = topics[i];
      const float* mean = m.kmean.data() + topic * r;
      const float* prefer = p.prefer.data() + topic * r;
      rng.Normals(own.data(), r);
      RemoveMeanComponent(mean, own.data(), r);
      row = p.base;
      for (int c = 0; c < r; ++c) {
        const float coef = p.focus_gain * mean[c] + prefer[c] + p.coord_std * own[c];
        Axpy(coef, m.KBasis(topic, c), row.data(), d);
      }
      rng.Normals(noise.data(), d);
      Axpy(kQueryNoiseStd, noise.data(), row.data(), d);
      ApplyRope(plan.RopeRow(positions[i]), row.data(), plan.pairs);
      StoreRow(o.layout.dtype, out, j * rows + i, row.data(), d);
    }
  }
}

}  // namespace

void GenerateHead(const Plan& plan, int layer, int kv_head, const HeadOutputs& out) {
  const HeadModel m = MakeHeadModel(plan, layer, kv_head);
  GenerateKv(plan, m, layer, kv_head, /*keys=*/true, out.k);
  GenerateKv(plan, m, layer, kv_head, /*keys=*/false, out.v);
  if (out.q_window != nullptr) {
    GenerateQueries(plan, m, layer, kv_head, kQueryWindow, plan.window_pos, plan.window_topic,
                    out.q_window);
  }
  if (out.q_ref != nullptr) {
    GenerateQueries(plan, m, layer, kv_head, kQueryRef, plan.ref_pos, plan.ref_topic, out.q_ref);
  }
}

}  // namespace kvc::synth_detail
