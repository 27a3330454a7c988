// KV layouts and caches: what a request carries (KvCache) and what compaction returns
// (CompactedCache). Shapes follow design §3:
//   per layer  k, v          [n_kv_heads, T, head_dim]   post-RoPE keys
//              q_window      [n_q_heads, W, head_dim]    optional, last W context positions
//              q_ref         [n_q_heads, N, head_dim]    optional, attend to the whole context
//   compacted  k, v          [sum_h t_h, head_dim]       heads concatenated, no padding
//              beta          [sum_h t_h]                 f32 log-bias per kept key
//              offsets       n_kv_heads + 1 entries      head h owns rows [offsets[h], offsets[h+1])
// Thread safety: plain values; see Tensor for sharing of storage.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace kvc {

struct KvLayout {
  int n_layers = 0;
  int n_kv_heads = 0;
  int n_q_heads = 0;  // multiple of n_kv_heads (GQA group = n_q_heads / n_kv_heads)
  int head_dim = 0;
  DType dtype = DType::kF32;  // dtype of K and V (F32, F16 or BF16)
  int64_t tokens = 0;         // T, the source context length

  int group() const { return n_kv_heads > 0 ? n_q_heads / n_kv_heads : 0; }
  // Positive dims, GQA divisibility, a floating dtype, sane upper bounds.
  Status Validate() const;
  // "L=32 kv=8 q=32 d=128 f16 T=32768"
  std::string ToString() const;
  bool operator==(const KvLayout&) const = default;
};

struct LayerKv {
  Tensor k;
  Tensor v;
  std::optional<Tensor> q_window;
  std::optional<Tensor> q_ref;
};

struct KvCache {
  KvLayout layout;
  std::vector<LayerKv> layers;  // size n_layers
  // Free-form metadata carried into files: "model", "tokens", "rope_theta", ...
  std::map<std::string, std::string> metadata;

  // Checks the layout, every tensor's shape and dtype against it (queries may be any floating
  // dtype; all layers must agree on which query kinds are present and their counts), and, when
  // check_finite, that no element is NaN or Inf. The error names the layer and tensor.
  Status Validate(bool check_finite = true) const;
  bool has_q_window() const { return !layers.empty() && layers[0].q_window.has_value(); }
  bool has_q_ref() const { return !layers.empty() && layers[0].q_ref.has_value(); }
};

struct CompactedLayer {
  Tensor k;                      // [sum_h t_h, head_dim], layout dtype
  Tensor v;                      // [sum_h t_h, head_dim], layout dtype
  Tensor beta;                   // [sum_h t_h], F32
  std::vector<int64_t> offsets;  // n_kv_heads + 1, offsets[0] = 0, non-decreasing

  int64_t budget(int head) const { return offsets[head + 1] - offsets[head]; }
  int64_t total() const { return offsets.empty() ? 0 : offsets.back(); }
};

struct CompactedCache {
  KvLayout layout;  // the source layout; layout.tokens is the source length T
  std::vector<CompactedLayer> layers;
  std::map<std::string, std::string> metadata;  // "method", "spec", "fidelity", ...

  // Offsets consistent with tensor shapes, every head budget in [0, T], dtypes as above,
  // beta finite or -inf only where documented (never NaN), K and V finite.
  Status Validate() const;
  int64_t total_entries() const;
};

}  // namespace kvc
