#include "tests/harness/llama2.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

namespace kvc::harness {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the llama2.c checkpoint reader assumes a little-endian host");

constexpr size_t kHeaderBytes = 7 * sizeof(int32_t);
constexpr float kRmsEps = 1e-5f;

// Bounds that keep every size product well inside 64 bits.
constexpr int kMaxDim = 1 << 16;
constexpr int kMaxHidden = 1 << 18;
constexpr int kMaxLayers = 1024;
constexpr int kMaxVocab = 1 << 20;
constexpr int kMaxSeqLen = 1 << 20;

Status CheckHeader(const ModelConfig& c, const std::string& name) {
  auto bad = [&](const std::string& why) {
    return Status::Corruption(name + ": invalid llama2.c header (" + c.ToString() + "): " + why);
  };
  if (c.dim <= 0 || c.hidden_dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 ||
      c.vocab_size <= 0 || c.seq_len <= 0) {
    return bad("every dimension must be positive (vocab_size may be negative only as a flag)");
  }
  if (c.dim % c.n_heads != 0) return bad("dim is not a multiple of n_heads");
  if (c.n_heads % c.n_kv_heads != 0) return bad("n_heads is not a multiple of n_kv_heads");
  if (c.head_dim() % 2 != 0) return bad("head_dim must be even for RoPE");
  if (c.dim > kMaxDim || c.hidden_dim > kMaxHidden || c.n_layers > kMaxLayers ||
      c.vocab_size > kMaxVocab || c.seq_len > kMaxSeqLen) {
    return Status::NotSupported(name + ": header (" + c.ToString() +
                                ") exceeds the harness limits (dim <= 65536, hidden <= 262144, "
                                "layers <= 1024, vocab <= 1048576, seq_len <= 1048576)");
  }
  return Status::OK();
}

void RmsNorm(float* out, const float* x, const float* weight, int n) {
  float ss = 0.0f;
  for (int j = 0; j < n; ++j) ss += x[j] * x[j];
  ss = 1.0f / std::sqrt(ss / static_cast<float>(n) + kRmsEps);
  for (int j = 0; j < n; ++j) out[j] = weight[j] * (ss * x[j]);
}

// out[rows] = w[rows, cols] * x[cols].
void MatVec(float* out, const float* w, const float* x, int rows, int cols) {
  for (int i = 0; i < rows; ++i) {
    const float* row = w + static_cast<size_t>(i) * cols;
    float acc = 0.0f;
    for (int j = 0; j < cols; ++j) acc += row[j] * x[j];
    out[i] = acc;
  }
}

float Dot(const float* a, const float* b, int n) {
  float acc = 0.0f;
  for (int i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

}  // namespace

std::string ModelConfig::ToString() const {
  return "dim=" + std::to_string(dim) + " hidden=" + std::to_string(hidden_dim) +
         " L=" + std::to_string(n_layers) + " heads=" + std::to_string(n_heads) +
         " kv=" + std::to_string(n_kv_heads) + " vocab=" + std::to_string(vocab_size) +
         " seq=" + std::to_string(seq_len);
}

Llama2Model::Offsets Llama2Model::ComputeOffsets(const ModelConfig& c) {
  const size_t dim = c.dim, hidden = c.hidden_dim, L = c.n_layers, vocab = c.vocab_size;
  const size_t kv_dim = c.kv_dim(), head_dim = c.head_dim(), seq = c.seq_len;
  Offsets o;
  size_t at = 0;
  auto take = [&at](size_t n) {
    const size_t here = at;
    at += n;
    return here;
  };
  o.embedding = take(vocab * dim);
  o.rms_att = take(L * dim);
  o.wq = take(L * dim * dim);
  o.wk = take(L * kv_dim * dim);
  o.wv = take(L * kv_dim * dim);
  o.wo = take(L * dim * dim);
  o.rms_ffn = take(L * dim);
  o.w1 = take(L * hidden * dim);
  o.w2 = take(L * dim * hidden);
  o.w3 = take(L * hidden * dim);
  o.rms_final = take(dim);
  take(seq * head_dim);  // the two legacy RoPE tables, seq_len * head_dim / 2 floats each
  o.wcls = c.shared_classifier ? o.embedding : take(vocab * dim);
  o.total = at;
  return o;
}

Result<Llama2Model> Llama2Model::FromBytes(std::span<const uint8_t> bytes,
                                           const std::string& name) {
  if (bytes.size() < kHeaderBytes) {
    return Status::Corruption(name + ": " + std::to_string(bytes.size()) +
                              " bytes, shorter than the 28-byte llama2.c header");
  }
  int32_t h[7];
  std::memcpy(h, bytes.data(), kHeaderBytes);
  ModelConfig c;
  c.dim = h[0];
  c.hidden_dim = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  c.shared_classifier = h[5] > 0;
  c.vocab_size = h[5] == std::numeric_limits<int32_t>::min() ? 0 : std::abs(h[5]);
  c.seq_len = h[6];
  KVC_RETURN_IF_ERROR(CheckHeader(c, name));

  Llama2Model m;
  m.cfg_ = c;
  m.off_ = ComputeOffsets(c);
  const size_t want = kHeaderBytes + m.off_.total * sizeof(float);
  if (bytes.size() != want) {
    return Status::Corruption(name + ": file has " + std::to_string(bytes.size()) +
                              " bytes but the header (" + c.ToString() + ") implies " +
                              std::to_string(want) + " bytes (" +
                              (bytes.size() < want ? "truncated" : "trailing data") + ")");
  }
  m.w_.resize(m.off_.total);
  std::memcpy(m.w_.data(), bytes.data() + kHeaderBytes, m.off_.total * sizeof(float));
  for (size_t i = 0; i < m.w_.size(); ++i) {
    if (!std::isfinite(m.w_[i])) {
      return Status::Corruption(name + ": non-finite weight at float index " + std::to_string(i));
    }
  }
  return m;
}

Result<Llama2Model> Llama2Model::Load(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Status::NotFound("llama2.c checkpoint not found: " + path);
  }
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Status::IOError("llama2.c checkpoint is not a regular file: " + path);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError("cannot open llama2.c checkpoint: " + path);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  if (in.bad()) return Status::IOError("read error on llama2.c checkpoint: " + path);
  return FromBytes(bytes, path);
}

KvLayout Llama2Model::Layout(int64_t tokens) const {
  KvLayout l;
  l.n_layers = cfg_.n_layers;
  l.n_kv_heads = cfg_.n_kv_heads;
  l.n_q_heads = cfg_.n_heads;
  l.head_dim = cfg_.head_dim();
  l.dtype = DType::kF32;
  l.tokens = tokens;
  return l;
}

const float* Llama2Model::rms_att(int l) const {
  return w_.data() + off_.rms_att + size_t(l) * cfg_.dim;
}
const float* Llama2Model::wq(int l) const {
  return w_.data() + off_.wq + size_t(l) * cfg_.dim * cfg_.dim;
}
const float* Llama2Model::wk(int l) const {
  return w_.data() + off_.wk + size_t(l) * cfg_.kv_dim() * cfg_.dim;
}
const float* Llama2Model::wv(int l) const {
  return w_.data() + off_.wv + size_t(l) * cfg_.kv_dim() * cfg_.dim;
}
const float* Llama2Model::wo(int l) const {
  return w_.data() + off_.wo + size_t(l) * cfg_.dim * cfg_.dim;
}
const float* Llama2Model::rms_ffn(int l) const {
  return w_.data() + off_.rms_ffn + size_t(l) * cfg_.dim;
}
const float* Llama2Model::w1(int l) const {
  return w_.data() + off_.w1 + size_t(l) * cfg_.hidden_dim * cfg_.dim;
}
const float* Llama2Model::w2(int l) const {
  return w_.data() + off_.w2 + size_t(l) * cfg_.dim * cfg_.hidden_dim;
}
const float* Llama2Model::w3(int l) const {
  return w_.data() + off_.w3 + size_t(l) * cfg_.hidden_dim * cfg_.dim;
}

void ApplyRope(float* x, int n_heads, int head_dim, int64_t pos) {
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + static_cast<size_t>(h) * head_dim;
    for (int i = 0; i < head_dim; i += 2) {
      const float freq =
          1.0f / std::pow(kRopeTheta, static_cast<float>(i) / static_cast<float>(head_dim));
      const float angle = static_cast<float>(pos) * freq;
      const float c = std::cos(angle), s = std::sin(angle);
      const float v0 = v[i], v1 = v[i + 1];
      v[i] = v0 * c - v1 * s;
      v[i + 1] = v0 * s + v1 * c;
    }
  }
}

int Argmax(std::span<const float> logits) {
  int best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best]) best = static_cast<int>(i);
  }
  return best;
}

Decoder::Decoder(const Llama2Model& model) : model_(&model) {
  const ModelConfig& c = model.config();
  live_k_.assign(size_t(c.n_layers) * c.n_kv_heads, {});
  live_v_.assign(size_t(c.n_layers) * c.n_kv_heads, {});
  x_.resize(c.dim);
  xb_.resize(c.dim);
  xb2_.resize(c.dim);
  q_.resize(c.dim);
  k_.resize(c.kv_dim());
  v_.resize(c.kv_dim());
  hb_.resize(c.hidden_dim);
  hb2_.resize(c.hidden_dim);
}

Result<Decoder> Decoder::WithPrefix(const Llama2Model& model, const CompactedCache& prefix) {
  const ModelConfig& c = model.config();
  KVC_RETURN_IF_ERROR(prefix.Validate().WithContext("compacted prefix"));
  const KvLayout& l = prefix.layout;
  if (l.n_layers != c.n_layers || l.n_kv_heads != c.n_kv_heads || l.n_q_heads != c.n_heads ||
      l.head_dim != c.head_dim()) {
    return Status::InvalidArgument("compacted prefix layout " + l.ToString() +
                                   " does not match the model (" + c.ToString() + ")");
  }
  Decoder d(model);
  d.start_ = l.tokens;
  d.prefix_.resize(c.n_layers);
  for (int layer = 0; layer < c.n_layers; ++layer) {
    const CompactedLayer& src = prefix.layers[layer];
    KVC_ASSIGN_OR_RETURN(Tensor k, src.k.To(DType::kF32));
    KVC_ASSIGN_OR_RETURN(Tensor v, src.v.To(DType::kF32));
    Prefix& p = d.prefix_[layer];
    const size_t n = static_cast<size_t>(k.numel());
    p.k.assign(k.data<float>(), k.data<float>() + n);
    p.v.assign(v.data<float>(), v.data<float>() + n);
    p.beta.assign(src.beta.data<float>(), src.beta.data<float>() + src.total());
    p.offsets = src.offsets;
  }
  return d;
}

void Decoder::AttendHead(int layer, int kv_head, const float* q, float* out) {
  const ModelConfig& c = model_->config();
  const int hd = c.head_dim();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const float* pk = nullptr;
  const float* pv = nullptr;
  const float* pbeta = nullptr;
  int64_t np = 0;
  if (!prefix_.empty()) {
    const Prefix& p = prefix_[layer];
    const int64_t first = p.offsets[kv_head];
    np = p.offsets[kv_head + 1] - first;
    pk = p.k.data() + first * hd;
    pv = p.v.data() + first * hd;
    pbeta = p.beta.data() + first;
  }
  const std::vector<float>& lk = live_k_[size_t(layer) * c.n_kv_heads + kv_head];
  const std::vector<float>& lv = live_v_[size_t(layer) * c.n_kv_heads + kv_head];
  const int64_t nl = static_cast<int64_t>(lk.size()) / hd;
  scores_.resize(np + nl);
  for (int64_t i = 0; i < np; ++i) scores_[i] = Dot(q, pk + i * hd, hd) * scale + pbeta[i];
  for (int64_t i = 0; i < nl; ++i) scores_[np + i] = Dot(q, lk.data() + i * hd, hd) * scale;
  // The live token itself is always present, so the maximum is finite even when every prefix
  // beta is -inf.
  float mx = -std::numeric_limits<float>::infinity();
  for (float s : scores_) mx = std::max(mx, s);
  float sum = 0.0f;
  for (float& s : scores_) {
    s = std::exp(s - mx);
    sum += s;
  }
  std::fill(out, out + hd, 0.0f);
  for (int64_t i = 0; i < np + nl; ++i) {
    const float a = scores_[i] / sum;
    const float* v = i < np ? pv + i * hd : lv.data() + (i - np) * hd;
    for (int j = 0; j < hd; ++j) out[j] += a * v[j];
  }
}

void Decoder::Attention(int layer, const float* q, float* out) {
  const ModelConfig& c = model_->config();
  const int hd = c.head_dim();
  for (int h = 0; h < c.n_heads; ++h) {
    AttendHead(layer, h / c.group(), q + size_t(h) * hd, out + size_t(h) * hd);
  }
}

Status Decoder::Step(int token, std::vector<float>* logits, StepCapture* capture) {
  const ModelConfig& c = model_->config();
  if (token < 0 || token >= c.vocab_size) {
    return Status::InvalidArgument("token id " + std::to_string(token) + " outside [0, " +
                                   std::to_string(c.vocab_size) + ")");
  }
  const int64_t pos = position();
  const int hd = c.head_dim(), kv_dim = c.kv_dim();
  if (capture) {
    capture->q.resize(c.n_layers);
    capture->k.resize(c.n_layers);
    capture->v.resize(c.n_layers);
  }
  std::memcpy(x_.data(), model_->embedding() + size_t(token) * c.dim, c.dim * sizeof(float));
  for (int l = 0; l < c.n_layers; ++l) {
    RmsNorm(xb_.data(), x_.data(), model_->rms_att(l), c.dim);
    MatVec(q_.data(), model_->wq(l), xb_.data(), c.dim, c.dim);
    MatVec(k_.data(), model_->wk(l), xb_.data(), kv_dim, c.dim);
    MatVec(v_.data(), model_->wv(l), xb_.data(), kv_dim, c.dim);
    ApplyRope(q_.data(), c.n_heads, hd, pos);
    ApplyRope(k_.data(), c.n_kv_heads, hd, pos);
    for (int h = 0; h < c.n_kv_heads; ++h) {
      auto& lk = live_k_[size_t(l) * c.n_kv_heads + h];
      auto& lv = live_v_[size_t(l) * c.n_kv_heads + h];
      lk.insert(lk.end(), k_.begin() + h * hd, k_.begin() + (h + 1) * hd);
      lv.insert(lv.end(), v_.begin() + h * hd, v_.begin() + (h + 1) * hd);
    }
    if (capture) {
      capture->q[l] = q_;
      capture->k[l] = k_;
      capture->v[l] = v_;
    }
    Attention(l, q_.data(), xb_.data());
    MatVec(xb2_.data(), model_->wo(l), xb_.data(), c.dim, c.dim);
    for (int j = 0; j < c.dim; ++j) x_[j] += xb2_[j];
    RmsNorm(xb_.data(), x_.data(), model_->rms_ffn(l), c.dim);
    MatVec(hb_.data(), model_->w1(l), xb_.data(), c.hidden_dim, c.dim);
    MatVec(hb2_.data(), model_->w3(l), xb_.data(), c.hidden_dim, c.dim);
    for (int j = 0; j < c.hidden_dim; ++j) {
      const float a = hb_[j];
      hb_[j] = a * (1.0f / (1.0f + std::exp(-a))) * hb2_[j];
    }
    MatVec(xb_.data(), model_->w2(l), hb_.data(), c.dim, c.hidden_dim);
    for (int j = 0; j < c.dim; ++j) x_[j] += xb_[j];
  }
  RmsNorm(x_.data(), x_.data(), model_->rms_final(), c.dim);
  logits->resize(c.vocab_size);
  MatVec(logits->data(), model_->wcls(), x_.data(), c.vocab_size, c.dim);
  ++live_;
  return Status::OK();
}

}  // namespace kvc::harness
