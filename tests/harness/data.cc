#include "tests/harness/data.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace kvc::harness {
namespace {

constexpr uint64_t kStreamContext = 1;
constexpr uint64_t kStreamReference = 2;
constexpr uint64_t kStreamHeldout = 3;

// Per layer, the queries of successive positions, position-major: [N][n_q * d].
using QueryRows = std::vector<std::vector<float>>;

void AppendQueries(const StepCapture& cap, QueryRows* rows) {
  rows->resize(cap.q.size());
  for (size_t l = 0; l < cap.q.size(); ++l) {
    (*rows)[l].insert((*rows)[l].end(), cap.q[l].begin(), cap.q[l].end());
  }
}

// Rows [first, first + n) of one layer's position-major queries as [n_q, n, d].
Tensor HeadMajor(const std::vector<float>& rows, int64_t first, int64_t n, int n_q, int d) {
  Tensor t = Tensor::Empty(DType::kF32, {n_q, n, d});
  float* out = t.data<float>();
  for (int h = 0; h < n_q; ++h) {
    for (int64_t i = 0; i < n; ++i) {
      const float* src = rows.data() + ((first + i) * n_q + h) * d;
      std::copy(src, src + d, out + (h * n + i) * d);
    }
  }
  return t;
}

struct ContextRun {
  std::vector<int> tokens;
  std::vector<float> last_logits;  // after the last context token
  std::vector<Tensor> k, v;        // per layer [n_kv, T, d]
  QueryRows queries;               // per layer [T][n_q * d]
};

Status RunContext(const Llama2Model& model, const DataOptions& o, Decoder* dec, ContextRun* run) {
  const ModelConfig& c = model.config();
  const int64_t T = o.context_tokens;
  const int d = c.head_dim();
  run->k.assign(c.n_layers, Tensor());
  run->v.assign(c.n_layers, Tensor());
  for (int l = 0; l < c.n_layers; ++l) {
    run->k[l] = Tensor::Empty(DType::kF32, {c.n_kv_heads, T, d});
    run->v[l] = Tensor::Empty(DType::kF32, {c.n_kv_heads, T, d});
  }
  Sampler sampler(DeriveSeed(o.seed, kStreamContext, 0), o.temperature);
  StepCapture cap;
  int token = kBosToken;
  for (int64_t p = 0; p < T; ++p) {
    run->tokens.push_back(token);
    KVC_RETURN_IF_ERROR(dec->Step(token, &run->last_logits, &cap));
    AppendQueries(cap, &run->queries);
    for (int l = 0; l < c.n_layers; ++l) {
      for (int h = 0; h < c.n_kv_heads; ++h) {
        const size_t dst = (size_t(h) * T + p) * d;
        std::copy_n(cap.k[l].data() + h * d, d, run->k[l].data<float>() + dst);
        std::copy_n(cap.v[l].data() + h * d, d, run->v[l].data<float>() + dst);
      }
    }
    if (p + 1 < T) token = sampler.Sample(run->last_logits);
  }
  return Status::OK();
}

// Samples `n` tokens after the context held by `dec` (a copy), recording each fed token's
// queries; the first token comes from `first_logits`.
Status RunContinuation(Decoder dec, const std::vector<float>& first_logits, uint64_t seed,
                       const DataOptions& o, std::vector<int>* tokens, QueryRows* rows) {
  Sampler sampler(seed, o.temperature);
  std::vector<float> logits = first_logits;
  StepCapture cap;
  for (int i = 0; i < o.continuation_tokens; ++i) {
    const int token = sampler.Sample(logits);
    tokens->push_back(token);
    KVC_RETURN_IF_ERROR(dec.Step(token, &logits, &cap));
    AppendQueries(cap, rows);
  }
  return Status::OK();
}

Status RunRepeat(Decoder dec, const std::vector<int>& context, QueryRows* rows) {
  std::vector<float> logits;
  StepCapture cap;
  for (int token : context) {
    KVC_RETURN_IF_ERROR(dec.Step(token, &logits, &cap));
    AppendQueries(cap, rows);
  }
  return Status::OK();
}

std::string Hex(uint64_t x) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(x));
  return buf;
}

void FillMetadata(const DataOptions& o, const HarnessData& data, KvCache* cache) {
  cache->metadata["model"] = o.model_name;
  cache->metadata["tokens"] = std::to_string(data.context.size());
  cache->metadata["tokens_fnv1a64"] = Hex(TokensHash(data.context));
  cache->metadata["rope_theta"] = "10000";
  cache->metadata["seed"] = std::to_string(o.seed);
  cache->metadata["q_ref"] = std::to_string(o.ref_continuations) + " continuations x " +
                             std::to_string(o.continuation_tokens) + " tokens" +
                             (o.repeat_prefill ? " + repeat-prefill of the context" : "");
}

}  // namespace

Status DataOptions::Validate() const {
  auto bad = [](const std::string& m) { return Status::InvalidArgument("DataOptions." + m); };
  if (context_tokens < 2 || context_tokens > (int64_t{1} << 20)) {
    return bad("context_tokens must be in [2, 1048576]");
  }
  if (window < 1 || window > context_tokens) return bad("window must be in [1, context_tokens]");
  if (ref_continuations < 0) return bad("ref_continuations must be >= 0");
  if (heldout_continuations < 0) return bad("heldout_continuations must be >= 0");
  if (continuation_tokens < 1) return bad("continuation_tokens must be >= 1");
  if (ref_continuations == 0 && !repeat_prefill) {
    return bad("ref_continuations is 0 and repeat_prefill is off: q_ref would be empty");
  }
  if (!(temperature > 0.0f) || !std::isfinite(temperature)) {
    return bad("temperature must be finite and > 0");
  }
  return Status::OK();
}

Result<HarnessData> ProduceData(const Llama2Model& model, const DataOptions& o) {
  KVC_RETURN_IF_ERROR(o.Validate());
  const ModelConfig& c = model.config();
  const int64_t T = o.context_tokens;
  Decoder dec(model);
  ContextRun ctx;
  KVC_RETURN_IF_ERROR(RunContext(model, o, &dec, &ctx));

  QueryRows ref_rows;
  std::vector<int> unused;
  for (int i = 0; i < o.ref_continuations; ++i) {
    unused.clear();
    KVC_RETURN_IF_ERROR(RunContinuation(
        dec, ctx.last_logits, DeriveSeed(o.seed, kStreamReference, i), o, &unused, &ref_rows));
  }
  if (o.repeat_prefill) KVC_RETURN_IF_ERROR(RunRepeat(dec, ctx.tokens, &ref_rows));

  HarnessData data;
  QueryRows ho_rows;
  data.heldout.resize(o.heldout_continuations);
  for (int i = 0; i < o.heldout_continuations; ++i) {
    KVC_RETURN_IF_ERROR(RunContinuation(dec, ctx.last_logits, DeriveSeed(o.seed, kStreamHeldout, i),
                                        o, &data.heldout[i], &ho_rows));
  }

  const int n_q = c.n_heads, d = c.head_dim();
  const int64_t row = int64_t{n_q} * d;
  data.context = std::move(ctx.tokens);
  data.cache.layout = model.Layout(T);
  data.cache.layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerKv& out = data.cache.layers[l];
    out.k = ctx.k[l];
    out.v = ctx.v[l];
    out.q_window = HeadMajor(ctx.queries[l], T - o.window, o.window, n_q, d);
    const int64_t n_ref = static_cast<int64_t>(ref_rows[l].size()) / row;
    out.q_ref = HeadMajor(ref_rows[l], 0, n_ref, n_q, d);
    if (o.heldout_continuations > 0) {
      const int64_t n_ho = static_cast<int64_t>(ho_rows[l].size()) / row;
      data.heldout_queries.push_back(HeadMajor(ho_rows[l], 0, n_ho, n_q, d));
    }
  }
  FillMetadata(o, data, &data.cache);
  KVC_RETURN_IF_ERROR(data.cache.Validate().WithContext("produced KV cache"));
  return data;
}

Sampler::Sampler(uint64_t seed, float temperature) : rng_(seed), temperature_(temperature) {}

int Sampler::Sample(const std::vector<float>& logits) {
  double mx = -INFINITY;
  for (float x : logits) mx = std::max(mx, static_cast<double>(x));
  probs_.resize(logits.size());
  double sum = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) {
    probs_[i] = std::exp((logits[i] - mx) / temperature_);
    sum += probs_[i];
  }
  // 53 random bits -> u in [0, 1); the engine's output sequence is fixed by the standard.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * sum;
  double acc = 0.0;
  for (size_t i = 0; i < probs_.size(); ++i) {
    acc += probs_[i];
    if (u < acc) return static_cast<int>(i);
  }
  return static_cast<int>(probs_.size()) - 1;
}

uint64_t DeriveSeed(uint64_t seed, uint64_t stream, uint64_t index) {
  uint64_t z = seed ^ (stream * 0x9e3779b97f4a7c15ULL) ^ (index * 0xd1b54a32d192ed03ULL);
  for (int round = 0; round < 2; ++round) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
  }
  return z;
}

Result<std::vector<int>> GreedyFromBos(const Llama2Model& model, int n) {
  if (n < 0) return Status::InvalidArgument("GreedyFromBos: n must be >= 0");
  Decoder dec(model);
  std::vector<float> logits;
  std::vector<int> out;
  int token = kBosToken;
  for (int i = 0; i < n; ++i) {
    KVC_RETURN_IF_ERROR(dec.Step(token, &logits));
    token = Argmax(logits);
    out.push_back(token);
  }
  return out;
}

ModelLocation FindTestModel() {
  constexpr const char* kRelative = "/../shared/models/stories260K.bin";
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("KVC_TEST_MODEL"); env && *env) candidates.push_back(env);
  if (const char* root = std::getenv("KVC_SOURCE_DIR"); root && *root) {
    candidates.push_back(std::string(root) + kRelative);
  }
#ifdef KVC_HARNESS_SOURCE_ROOT
  candidates.push_back(std::string(KVC_HARNESS_SOURCE_ROOT) + kRelative);
#endif
  ModelLocation loc;
  for (const std::string& c : candidates) {
    loc.tried += (loc.tried.empty() ? "" : ", ") + c;
    std::error_code ec;
    if (loc.path.empty() && std::filesystem::is_regular_file(c, ec)) loc.path = c;
  }
  return loc;
}

uint64_t TokensHash(const std::vector<int>& tokens) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int t : tokens) {
    const uint32_t u = static_cast<uint32_t>(t);
    for (int b = 0; b < 4; ++b) {
      h ^= (u >> (8 * b)) & 0xffu;
      h *= 0x100000001b3ULL;
    }
  }
  return h;
}

}  // namespace kvc::harness
