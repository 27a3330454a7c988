// Data production for the real-model quality harness: a sampled context, its KV cache with
// window and reference queries (design §3), and held-out continuations for evaluation.
//
// What ProduceData does, with T = context_tokens:
//  1. context: [BOS] then T-1 tokens sampled at `temperature` from the model (seed `seed`);
//     per layer the post-RoPE K and V of positions 0..T-1 become KvCache k, v [n_kv, T, d];
//  2. q_window: the post-RoPE queries of the last `window` context positions [n_q, W, d];
//  3. q_ref: queries at their true positions >= T, in this order: `ref_continuations`
//     continuations of `continuation_tokens` tokens each, sampled with the full cache (seed
//     stream "reference"), then, when `repeat_prefill`, the context fed again after itself
//     (positions T..2T-1; beyond the model's seq_len of 512 when 2T > 512, which RoPE computes
//     all the same since the model has no learned position table);
//  4. held out: `heldout_continuations` continuations from a disjoint seed stream ("held-out"),
//     returned as token sequences plus their full-cache queries (per layer [n_q, N_ho, d]) for
//     attention-fidelity measurements. They never enter q_ref.
// A continuation's first token is sampled from the context's last logits, so continuation
// token i sits at position T + i.
//
// Thread safety: pure functions of their arguments.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"
#include "tests/harness/llama2.h"

namespace kvc::harness {

struct DataOptions {
  int64_t context_tokens = 448;   // T, BOS included. Default: 448 (T + 64 stays <= seq_len).
  int window = 32;                // q_window rows. Default: 32.
  int ref_continuations = 6;      // Default: 6.
  int heldout_continuations = 4;  // Default: 4.
  int continuation_tokens = 48;   // tokens per continuation. Default: 48.
  bool repeat_prefill = true;     // add the context's repeat to q_ref. Default: true.
  float temperature = 1.0f;       // sampling temperature (> 0). Default: 1.
  uint64_t seed = 1;              // every random choice derives from it. Default: 1.
  std::string model_name = "stories260K";  // metadata "model". Default: "stories260K".

  // InvalidArgument naming the field when a value is out of range.
  Status Validate() const;
};

struct HarnessData {
  std::vector<int> context;  // T token ids, context[0] == BOS
  // Layout of the model with tokens = T, F32; k, v, q_window, q_ref on every layer. Metadata:
  // "model", "tokens" (T), "tokens_fnv1a64" (hex hash of the ids), "rope_theta" ("10000"),
  // "seed", "q_ref" (a description of its rows).
  KvCache cache;
  std::vector<std::vector<int>> heldout;  // held-out continuation token ids
  // Per layer F32 [n_q, N_ho, d] at positions >= T; empty when heldout_continuations == 0.
  std::vector<Tensor> heldout_queries;
};

// Produces the data above. InvalidArgument from options.Validate().
Result<HarnessData> ProduceData(const Llama2Model& model, const DataOptions& options);

// Seeded sampler: draws token ids from softmax(logits / temperature) with a std::mt19937_64
// stream (fully specified by the standard, so runs are reproducible across platforms).
class Sampler {
 public:
  Sampler(uint64_t seed, float temperature);
  int Sample(const std::vector<float>& logits);

 private:
  std::mt19937_64 rng_;
  float temperature_;
  std::vector<double> probs_;
};

// Derives an independent seed for stream `stream`, item `index` (SplitMix64 mixing).
uint64_t DeriveSeed(uint64_t seed, uint64_t stream, uint64_t index);

// Greedy decoding from [BOS]: the `n` argmax tokens after BOS.
Result<std::vector<int>> GreedyFromBos(const Llama2Model& model, int n);

// Where the test checkpoint is: $KVC_TEST_MODEL if set, else
// $KVC_SOURCE_DIR/../shared/models/stories260K.bin (KVC_SOURCE_DIR is set by kvc_add_test), else
// the same path under the source root this library was configured from. The model is never
// copied into the repository.
struct ModelLocation {
  std::string path;   // the first candidate that exists; empty when none does
  std::string tried;  // every candidate, for a skip or error message
};
ModelLocation FindTestModel();

// 64-bit FNV-1a over the little-endian int32 token ids.
uint64_t TokensHash(const std::vector<int>& tokens);

}  // namespace kvc::harness
