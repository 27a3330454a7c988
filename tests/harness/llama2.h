// A llama2.c checkpoint loader and an f32 forward pass, used by the real-model quality harness.
//
// Checkpoint format ("legacy" llama2.c float32, all little-endian): a header of 7 int32 (dim,
// hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len) followed by float32 weight
// arrays, each matrix row-major [out, in]:
//   token_embedding [vocab, dim]; rms_att [L, dim]; wq [L, dim, dim]; wk [L, kv_dim, dim];
//   wv [L, kv_dim, dim]; wo [L, dim, dim]; rms_ffn [L, dim]; w1 [L, hidden, dim];
//   w2 [L, dim, hidden]; w3 [L, hidden, dim]; rms_final [dim]; two unused legacy RoPE tables
//   of seq_len * head_dim / 2 floats each; wcls [vocab, dim] only when vocab_size < 0 (a
//   positive vocab_size means the classifier shares the token embedding).
// The loader accepts a file only when its size equals exactly what the header implies.
//
// Forward pass (per token, per layer): rmsnorm (eps 1e-5) -> q, k, v -> RoPE on q and k (pairs
// (2i, 2i+1) of each head rotated by pos * 10000^(-2i/head_dim)) -> attention (query head j reads
// kv head j / group) -> wo -> residual; rmsnorm -> SwiGLU FFN -> residual. Logits = wcls of the
// final rmsnorm. The model has no learned position table, so positions beyond seq_len are
// computed with the same RoPE formula; the harness uses that for repeat-prefill queries
// (positions T..2T-1), which a trained model never saw: they are still valid reference queries.
//
// Thread safety: a Llama2Model is immutable after Load and may be shared by threads. A Decoder is
// a value with mutable state: one thread at a time; copies are independent.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"

namespace kvc::harness {

inline constexpr int kBosToken = 1;
inline constexpr float kRopeTheta = 10000.0f;

struct ModelConfig {
  int dim = 0;
  int hidden_dim = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int vocab_size = 0;  // always positive here; see shared_classifier
  int seq_len = 0;     // trained context length; longer positions still work (see above)
  bool shared_classifier = true;

  int head_dim() const { return n_heads > 0 ? dim / n_heads : 0; }
  int kv_dim() const { return n_kv_heads * head_dim(); }
  int group() const { return n_kv_heads > 0 ? n_heads / n_kv_heads : 0; }
  // "dim=64 hidden=172 L=5 heads=8 kv=4 vocab=512 seq=512"
  std::string ToString() const;
};

class Llama2Model {
 public:
  // Reads and validates a checkpoint. NotFound if the file does not exist, IOError if it is not a
  // regular file or cannot be read, Corruption when the header is invalid (non-positive or
  // inconsistent dims) or the file size differs from what the header implies (the message gives
  // both sizes), NotSupported when dims are beyond what the harness handles.
  static Result<Llama2Model> Load(const std::string& path);
  // Same validation on bytes already in memory; `name` appears in error messages.
  static Result<Llama2Model> FromBytes(std::span<const uint8_t> bytes, const std::string& name);

  const ModelConfig& config() const { return cfg_; }
  // The KV layout of a context of `tokens` positions produced by this model (F32).
  KvLayout Layout(int64_t tokens) const;

  // Weight access for the forward pass. Row-major [out, in]; `layer` in [0, n_layers).
  const float* embedding() const { return w_.data() + off_.embedding; }
  const float* rms_att(int layer) const;
  const float* wq(int layer) const;
  const float* wk(int layer) const;
  const float* wv(int layer) const;
  const float* wo(int layer) const;
  const float* rms_ffn(int layer) const;
  const float* w1(int layer) const;
  const float* w2(int layer) const;
  const float* w3(int layer) const;
  const float* rms_final() const { return w_.data() + off_.rms_final; }
  const float* wcls() const { return w_.data() + off_.wcls; }

 private:
  struct Offsets {
    size_t embedding = 0, rms_att = 0, wq = 0, wk = 0, wv = 0, wo = 0, rms_ffn = 0, w1 = 0, w2 = 0,
           w3 = 0, rms_final = 0, wcls = 0, total = 0;
  };
  static Offsets ComputeOffsets(const ModelConfig& c);

  ModelConfig cfg_;
  Offsets off_;
  std::vector<float> w_;  // all floats after the header, in file order
};

// What one step exposes besides logits: per layer, the post-RoPE query of every query head
// ([n_heads * head_dim]) and the post-RoPE key and the value of every kv head ([kv_dim]).
struct StepCapture {
  std::vector<std::vector<float>> q;  // [n_layers][n_heads * head_dim]
  std::vector<std::vector<float>> k;  // [n_layers][kv_dim]
  std::vector<std::vector<float>> v;  // [n_layers][kv_dim]
};

// Incremental forward pass over one sequence. Two modes:
//  - full cache: positions start at 0; attention is plain causal over every token fed;
//  - compacted prefix: a CompactedCache (per layer and kv head: keys, values, beta) stands for a
//    source context of T = layout.tokens positions; live tokens take positions T, T+1, ... and a
//    live query's logits are q.k/sqrt(d) + beta over the prefix keys of its kv head and plain
//    causal q.k/sqrt(d) over the live tokens (its own included).
// The Decoder refers to the model it was made from: the model must outlive it and its copies.
class Decoder {
 public:
  // Full-cache mode.
  explicit Decoder(const Llama2Model& model);
  // Compacted-prefix mode. InvalidArgument when the cache fails Validate() or its layout
  // (layers, heads, head_dim) does not match the model. K and V are converted to f32.
  static Result<Decoder> WithPrefix(const Llama2Model& model, const CompactedCache& prefix);

  // Position of the next token fed (T + live tokens in prefix mode).
  int64_t position() const { return start_ + live_; }
  int64_t live_tokens() const { return live_; }
  int64_t prefix_tokens() const { return start_; }

  // Runs `token` at position(), appends its key and value, and writes the vocab_size logits to
  // *logits (resized). Fills *capture when given. InvalidArgument for a token outside
  // [0, vocab_size).
  Status Step(int token, std::vector<float>* logits, StepCapture* capture = nullptr);

 private:
  struct Prefix {  // one layer of the compacted prefix, f32
    std::vector<float> k, v, beta;
    std::vector<int64_t> offsets;
  };

  void Attention(int layer, const float* q, float* out);
  void AttendHead(int layer, int kv_head, const float* q, float* out);

  const Llama2Model* model_;
  int64_t start_ = 0;                       // first live position (T in prefix mode)
  int64_t live_ = 0;                        // live tokens fed so far
  std::vector<Prefix> prefix_;              // empty in full-cache mode
  std::vector<std::vector<float>> live_k_;  // [layer * n_kv + h] -> [live, head_dim]
  std::vector<std::vector<float>> live_v_;
  std::vector<float> x_, xb_, xb2_, q_, k_, v_, hb_, hb2_, scores_;  // scratch
};

// Applies the harness RoPE in place to `n_heads` heads of `head_dim` at position `pos`.
void ApplyRope(float* x, int n_heads, int head_dim, int64_t pos);

// Index of the largest logit (the lowest index on ties).
int Argmax(std::span<const float> logits);

}  // namespace kvc::harness
