// Generation of one (layer, KV head) of a synthetic cache (internal to tests/synth).
//
// Thread safety: GenerateHead may run concurrently for different (layer, KV head) pairs of the
// same Plan; each call writes only its own rows of the output buffers.
#pragma once

#include "tests/synth/synth_plan.h"

namespace kvc::synth_detail {

// Where one head's rows go. Each pointer is the start of the head's block in a tensor of the
// plan's dtype, or null when that kind is not emitted:
//   k, v      [T, head_dim]
//   q_window  [group, window, head_dim]  (the group's query heads, in order)
//   q_ref     [group, n_ref, head_dim]
struct HeadOutputs {
  void* k = nullptr;
  void* v = nullptr;
  void* q_window = nullptr;
  void* q_ref = nullptr;
};

// Fills the head's keys, values and its query heads' rows.
// REQUIRES: plan built by MakePlan with its RoPE table; 0 <= layer < n_layers,
// 0 <= kv_head < n_kv_heads; buffers sized as above.
void GenerateHead(const Plan& plan, int layer, int kv_head, const HeadOutputs& out);

}  // namespace kvc::synth_detail
