#include "services/cli/batch_plan.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>

#include "kernels/compactor.h"

namespace kvc::cli {
namespace {

// Fixed part of the resident set: code, allocator arenas, BLAS buffers, the JSON and metadata
// of a document.
constexpr int64_t kBaseBytes = int64_t{96} << 20;
// Per Compact thread: BLAS and allocator arenas.
constexpr int64_t kPerThreadBytes = int64_t{8} << 20;
// Rows of window queries the window-based scorers hold per block (kernels' row chunk).
constexpr int64_t kWindowRowBlock = 64;
// The smallest chunk the planner makes.
constexpr int64_t kMinChunkTokens = 256;

bool NeedsFitQueries(const CompactionSpec& s) {
  return s.method == Method::kAttentionMatching || ResolvedAllocator(s) == Allocator::kAm ||
         s.method == Method::kH2o;
}

// Largest per-head budget a round of the quality gate can reach.
int64_t GateCeiling(const CompactionSpec& s, int64_t hb, int64_t T) {
  if (s.gate.min_cosine <= 0) return std::min(hb, T);
  double b = static_cast<double>(hb);
  for (int r = 0; r < s.gate.max_rounds && b < static_cast<double>(T); ++r) {
    b = std::max(b + 1, std::ceil(b * s.gate.escalation));
  }
  return std::min<int64_t>(T, static_cast<int64_t>(b));
}

int64_t HeldoutRowsFor(const DumpShape& s, const CompactionSpec& spec) {
  if (s.q_ref_rows < 2 || spec.heldout_fraction <= 0) return 0;
  return static_cast<int64_t>(HeldoutRows(s.q_ref_rows, spec.heldout_fraction, spec.seed).size());
}

// Working set of one Compact thread on one head of `tokens` keys keeping `t` of them.
int64_t PerThreadBytes(const DumpShape& s, const CompactionSpec& spec, int64_t tokens, int64_t t) {
  const int64_t g = s.layout.group(), d = s.layout.head_dim;
  const int64_t held = HeldoutRowsFor(s, spec);
  int64_t method = 0;
  if (NeedsFitQueries(spec)) {
    const int64_t n = s.q_ref_rows > 0 ? g * (s.q_ref_rows - held) : 1024;
    const int64_t m = std::min(n, t);
    // Phi [n, T]; gathered columns, X and the QR copies [n, t]; the Gram matrix and its copy.
    method = 4 * n * tokens + 16 * n * t + 16 * m * m;
  }
  // Window scorers: a block of score rows, column sums, pooled scores.
  method = std::max(method, 4 * kWindowRowBlock * tokens + 24 * tokens + 16 * t * d);
  // Fidelity of one query head: scores [N_heldout, T].
  const int64_t fidelity = 4 * held * tokens + 16 * held * d;
  return std::max(method, fidelity) + kPerThreadBytes;
}

}  // namespace

bool ChunkableSpec(const CompactionSpec& spec) {
  if (spec.method != Method::kAttentionMatching) return false;
  if (spec.am.selection == AmSelection::kScores || spec.am.keys_as_queries) return false;
  const Allocator a = ResolvedAllocator(spec);
  return a == Allocator::kUniform || a == Allocator::kPyramid || a == Allocator::kAm;
}

int64_t EstimateUnit(const DumpShape& shape, const CompactionSpec& spec, int layers, int64_t tokens,
                     int64_t head_budget, int threads, bool chunked) {
  const KvLayout& L = shape.layout;
  const int64_t G = layers, H = L.n_kv_heads, d = L.head_dim, es = DTypeSize(L.dtype);
  const int64_t kv = G * 2 * H * tokens * d;
  // Source K/V (mapped pages or chunk copies) and Compact's F32 copies (shared when F32).
  int64_t bytes = kv * es + (es == 4 ? 0 : kv * 4);
  // Queries: source and F32 copies.
  const int64_t qrows = shape.q_ref_rows + (chunked ? 0 : shape.q_window_rows);
  bytes += G * L.n_q_heads * qrows * d * (DTypeSize(shape.q_dtype) + 4);
  // Scores [G, H, tokens] and the per-head results (F32) plus the assembled cache.
  const int64_t t = GateCeiling(spec, head_budget, tokens);
  bytes += 4 * G * H * tokens + G * H * t * (d * (8 + 2 * es) + 16);
  bytes += int64_t{threads} * PerThreadBytes(shape, spec, tokens, t);
  if (chunked) {
    // The group's concatenated result, and the whole-context fidelity pass of one kv head:
    // mapped K/V of the head, their F32 copies and one thread's scores per query head.
    const int64_t T = L.tokens;
    const int64_t group_t = GateCeiling(spec, spec.PerHeadBudget(T), T);
    bytes += G * H * group_t * (2 * d * es + 4);
    bytes += 2 * T * d * (es + 4) + int64_t{threads} * 4 * HeldoutRowsFor(shape, spec) * T;
  }
  return bytes + kBaseBytes;
}

std::vector<int64_t> Apportion(const std::vector<double>& weights, int64_t total,
                               const std::vector<int64_t>& caps) {
  const size_t n = weights.size();
  std::vector<int64_t> out(n, 0);
  int64_t cap_sum = 0;
  for (int64_t c : caps) cap_sum += std::max<int64_t>(c, 0);
  int64_t left = std::clamp<int64_t>(total, 0, cap_sum);
  std::vector<bool> open(n);
  for (size_t i = 0; i < n; ++i) open[i] = caps[i] > 0;
  // Water filling over the entries not at their cap, then largest remainders.
  while (left > 0) {
    double wsum = 0;
    for (size_t i = 0; i < n; ++i) wsum += open[i] ? std::max(weights[i], 0.0) : 0.0;
    const bool equal = wsum <= 0;
    std::vector<double> ideal(n, 0.0);
    int64_t given = 0;
    for (size_t i = 0; i < n; ++i) {
      if (!open[i]) continue;
      const double w = equal ? 1.0 : std::max(weights[i], 0.0);
      const double denom =
          equal ? static_cast<double>(std::count(open.begin(), open.end(), true)) : wsum;
      ideal[i] = static_cast<double>(left) * w / denom;
      const int64_t add = std::min<int64_t>(static_cast<int64_t>(ideal[i]), caps[i] - out[i]);
      out[i] += add;
      given += add;
    }
    left -= given;
    std::vector<size_t> order;
    for (size_t i = 0; i < n; ++i) {
      if (open[i] && out[i] < caps[i]) order.push_back(i);
    }
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return ideal[a] - std::floor(ideal[a]) > ideal[b] - std::floor(ideal[b]);
    });
    for (size_t i : order) {
      if (left == 0) break;
      ++out[i];
      --left;
    }
    for (size_t i = 0; i < n; ++i) open[i] = open[i] && out[i] < caps[i];
  }
  return out;
}

std::vector<int64_t> ChunkBudgets(const std::vector<int64_t>& bounds, int64_t head_budget) {
  std::vector<double> len;
  std::vector<int64_t> caps;
  for (size_t c = 0; c + 1 < bounds.size(); ++c) {
    len.push_back(static_cast<double>(bounds[c + 1] - bounds[c]));
    caps.push_back(bounds[c + 1] - bounds[c]);
  }
  return Apportion(len, head_budget, caps);
}

std::vector<int64_t> PyramidLayerSchedule(int L, int64_t head_budget, int64_t w, double beta,
                                          int64_t T) {
  // budget_l = w + round(max - l (max - min) / (L - 1)), min = (cap - w) / beta,
  // max = 2 (cap - w) - min (design §4); L = 1 or cap <= w: every layer gets cap.
  std::vector<double> share(std::max(L, 0), static_cast<double>(head_budget));
  if (L > 1 && head_budget > w && beta > 0) {
    const double free = static_cast<double>(head_budget - w);
    const double lo = free / beta, hi = 2.0 * free - lo;
    for (int l = 0; l < L; ++l) {
      share[l] = static_cast<double>(w) + std::round(hi - l * (hi - lo) / (L - 1));
    }
  }
  return Apportion(share, int64_t{L} * head_budget, std::vector<int64_t>(share.size(), T));
}

std::vector<int> D2oWholeLayers(const std::vector<int>& layers, int L) {
  std::vector<int> out;
  for (int l : layers) {
    const int idx = l < 0 ? L + l : l;
    if (idx >= 0 && idx < L) out.push_back(idx);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

namespace {

// Splits [0, L) into `n` groups of near-equal size.
std::vector<std::pair<int, int>> SplitLayers(int L, int n) {
  std::vector<std::pair<int, int>> out;
  for (int i = 0; i < n; ++i) {
    const int a = static_cast<int>(int64_t{L} * i / n),
              b = static_cast<int>(int64_t{L} * (i + 1) / n);
    out.emplace_back(a, b - a);
  }
  return out;
}

int64_t WindowRowsFor(const DumpShape& s, int requested) {
  if (s.q_window_rows <= 0) return 0;
  return requested <= 0 ? s.q_window_rows : std::min<int64_t>(requested, s.q_window_rows);
}

// Group budgets and specs for D2O (see the header): returns the allocation note.
std::string FillD2oGroups(const DumpShape& s, const CompactionSpec& spec, int64_t hb,
                          DocumentPlan& plan) {
  const int L = s.layout.n_layers;
  const int64_t T = s.layout.tokens;
  const std::vector<int> whole = D2oWholeLayers(spec.d2o.uncompressed_layers, L);
  const auto n_whole = static_cast<int64_t>(whole.size());
  const int64_t total = int64_t{L} * hb;  // per-head units over all layers
  const bool split = n_whole < L && total >= n_whole * T;
  const double rest =
      split ? static_cast<double>(total - n_whole * T) / static_cast<double>(L - n_whole) : 0.0;
  for (LayerGroup& g : plan.groups) {
    std::vector<int> local;
    for (int l : whole) {
      if (l >= g.first && l < g.first + g.count) local.push_back(l - g.first);
    }
    const double target = split ? static_cast<double>(local.size()) * static_cast<double>(T) +
                                      static_cast<double>(g.count - local.size()) * rest
                                : static_cast<double>(g.count) * static_cast<double>(hb);
    g.head_budget = std::clamp<int64_t>(std::llround(target / g.count), 0, T);
    g.spec.d2o.uncompressed_layers = local;
  }
  return "d2o: uncompressed layers keep their global indices; each group's budget is its share "
         "of the global split (whole layers T, the others the global average); the "
         "attention-variance ratios are normalised within each group";
}

// Fills every group's head budget and spec; returns the allocation note.
std::string FillGroups(const DumpShape& s, const CompactionSpec& spec, int64_t hb,
                       DocumentPlan& plan) {
  const int L = s.layout.n_layers;
  for (LayerGroup& g : plan.groups) {
    g.spec = spec;
    g.spec.threads = plan.threads;
    g.head_budget = hb;
  }
  if (plan.groups.size() == 1) {
    return "none needed: all " + std::to_string(L) +
           " layers form one group (the same computation as kvcompact compact)";
  }
  std::string note;
  const std::string within = std::to_string(plan.groups.size()) + " groups of up to " +
                             std::to_string(plan.groups[0].count) + " layers";
  switch (ResolvedAllocator(spec)) {
    case Allocator::kPyramid: {
      const std::vector<int64_t> b = PyramidLayerSchedule(
          L, hb, WindowRowsFor(s, spec.snapkv.window), spec.pyramid.beta, s.layout.tokens);
      for (LayerGroup& g : plan.groups) {
        g.head_budget = b[g.first];
        g.spec.allocator = Allocator::kUniform;
      }
      note = "pyramid: the layer schedule over all " + std::to_string(L) +
             " layers is computed up front (it needs no statistics); each layer is compacted "
             "with its layer budget; the document total is exact";
      break;
    }
    case Allocator::kD2o:
      note = FillD2oGroups(s, spec, hb, plan) + " (" + within + ")";
      break;
    case Allocator::kDynamicKv:
      note = "dynamickv: budget re-normalisation within each group, not across all layers (" +
             within + ")";
      break;
    case Allocator::kAm:
      note = "am allocator: fidelity-driven budgets within each group (" + within + ")";
      break;
    default:
      note = "uniform: every head gets the same budget, whatever the grouping (" + within + ")";
  }
  for (LayerGroup& g : plan.groups) g.spec.budget = g.head_budget;
  return note;
}

std::vector<int64_t> EvenBounds(int64_t T, int64_t chunks) {
  std::vector<int64_t> b;
  for (int64_t c = 0; c <= chunks; ++c) {
    b.push_back(static_cast<int64_t>((static_cast<__int128>(T) * c) / chunks));
  }
  return b;
}

Status CheckPlanInputs(const DumpShape& shape, const CompactionSpec& spec, const PlanOptions& o) {
  KVC_RETURN_IF_ERROR(shape.layout.Validate());
  KVC_RETURN_IF_ERROR(spec.Validate());
  if (o.threads < 1) return Status::InvalidArgument("plan: threads must be >= 1");
  if (o.memory_bytes <= 0) return Status::InvalidArgument("plan: memory budget must be > 0");
  if (o.group_layers < 0 || o.chunk_tokens < 0) {
    return Status::InvalidArgument("plan: group layers and chunk tokens must be >= 0");
  }
  if (spec.budget > shape.layout.tokens) {
    return Status::InvalidArgument(
        "budget " + std::to_string(spec.budget) +
        " exceeds the source length T = " + std::to_string(shape.layout.tokens));
  }
  if (spec.gate.min_cosine > 0 && (shape.q_ref_rows < 2 || spec.heldout_fraction <= 0)) {
    return Status::InvalidArgument(
        "the quality gate needs held-out queries: the dump must carry q_ref (at least 2 rows) "
        "and heldout_fraction must be > 0");
  }
  if (o.chunk_tokens > 0 && o.chunk_tokens < shape.layout.tokens && !ChunkableSpec(spec)) {
    return Status::InvalidArgument(
        "--chunk-tokens applies only to method am with highest, omp or omp-fast selection and a "
        "uniform, pyramid or am allocator");
  }
  return Status::OK();
}

}  // namespace

Result<DocumentPlan> PlanDocument(const DumpShape& shape, const CompactionSpec& spec,
                                  const PlanOptions& o) {
  KVC_RETURN_IF_ERROR(CheckPlanInputs(shape, spec, o));
  const int L = shape.layout.n_layers;
  const int64_t T = shape.layout.tokens, hb = spec.PerHeadBudget(T);
  auto est = [&](int g, int64_t tc, bool chunked) {
    const int64_t b = chunked ? std::max<int64_t>(1, hb * tc / T + 1) : hb;
    return EstimateUnit(shape, spec, g, tc, b, o.threads, chunked);
  };
  int G = o.group_layers > 0 ? std::min(o.group_layers, L) : L;
  while (o.group_layers == 0 && G > 1 && est(G, T, false) > o.memory_bytes) --G;
  if (G < L && ResolvedAllocator(spec) == Allocator::kPyramid) G = 1;
  int64_t tc = T;
  if (o.chunk_tokens > 0) {
    tc = std::min(o.chunk_tokens, T);
  } else if (ChunkableSpec(spec) && est(G, T, false) > o.memory_bytes) {
    G = 1;
    int64_t lo = std::min(kMinChunkTokens, T), hi = T;  // largest tc with est <= budget
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo + 1) / 2;
      if (est(1, mid, true) <= o.memory_bytes)
        lo = mid;
      else
        hi = mid - 1;
    }
    tc = lo;
  }
  DocumentPlan plan;
  plan.threads = o.threads;
  const int64_t chunks = std::min<int64_t>((T + tc - 1) / tc, std::max<int64_t>(hb, 1));
  plan.chunk_bounds = EvenBounds(T, chunks);
  const int64_t longest = (T + chunks - 1) / chunks;
  for (const auto& [first, count] : SplitLayers(L, (L + G - 1) / G)) {
    plan.groups.push_back(LayerGroup{first, count, hb, spec});
  }
  plan.allocation = FillGroups(shape, spec, hb, plan);
  plan.chunking = plan.chunked()
                      ? std::to_string(chunks) + " chunks of about " + std::to_string(longest) +
                            " tokens; chunk budgets in proportion to length; selection, beta "
                            "and values fitted per chunk on the fit queries (a chunk-local fit); "
                            "kept keys concatenated per head in position order; fidelity and "
                            "gate measured on the whole context"
                      : "none: every head is solved over all " + std::to_string(T) + " tokens";
  plan.estimated_bytes = est(plan.groups[0].count, longest, plan.chunked());
  if (o.store) {
    const int64_t out = int64_t{L} * shape.layout.n_kv_heads * hb *
                        (2 * shape.layout.head_dim * DTypeSize(shape.layout.dtype) + 4);
    plan.estimated_bytes = std::max(plan.estimated_bytes, kBaseBytes + 2 * out);
  }
  plan.over_budget = plan.estimated_bytes > o.memory_bytes;
  return plan;
}

std::string DocumentPlan::ToJson(bool with_estimate) const {
  nlohmann::ordered_json g = nlohmann::ordered_json::array();
  for (const LayerGroup& x : groups) g.push_back({x.first, x.count, x.head_budget});
  nlohmann::ordered_json j = {{"groups", g},
                              {"chunk_bounds", chunk_bounds},
                              {"allocation", allocation},
                              {"chunking", chunking}};
  if (with_estimate) j["estimated_bytes"] = estimated_bytes;
  return j.dump();
}

}  // namespace kvc::cli
