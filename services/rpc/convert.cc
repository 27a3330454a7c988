#include "services/rpc/convert.h"

#include <utility>

namespace kvc::rpc {
namespace {

Fidelity FidelityToThrift(const engine::EntryFidelity& f) {
  Fidelity out;
  out.measured = f.measured;
  out.mean_cosine = f.mean_cosine;
  out.min_cosine = f.min_cosine;
  out.p10_cosine = f.p10_cosine;
  out.mean_rel_l2 = f.mean_rel_l2;
  out.mass_error = f.mass_error;
  out.gate_requested = f.gate_requested;
  out.gate_passed = f.gate_passed;
  out.gate_rounds = f.gate_rounds;
  out.report_json = f.report_json;
  return out;
}

engine::EntryFidelity FidelityFromThrift(const Fidelity& f) {
  engine::EntryFidelity out;
  out.measured = f.measured;
  out.mean_cosine = f.mean_cosine;
  out.min_cosine = f.min_cosine;
  out.p10_cosine = f.p10_cosine;
  out.mean_rel_l2 = f.mean_rel_l2;
  out.mass_error = f.mass_error;
  out.gate_requested = f.gate_requested;
  out.gate_passed = f.gate_passed;
  out.gate_rounds = f.gate_rounds;
  out.report_json = f.report_json;
  return out;
}

TierStats TierToThrift(const storage::TierStats& t) {
  TierStats out;
  out.entries = static_cast<int64_t>(t.entries);
  out.bytes = static_cast<int64_t>(t.bytes);
  out.hits = static_cast<int64_t>(t.hits);
  out.misses = static_cast<int64_t>(t.misses);
  out.promotions = static_cast<int64_t>(t.promotions);
  out.demotions = static_cast<int64_t>(t.demotions);
  out.evictions = static_cast<int64_t>(t.evictions);
  out.expirations = static_cast<int64_t>(t.expirations);
  out.corruptions = static_cast<int64_t>(t.corruptions);
  return out;
}

}  // namespace

Result<CompactionSpec> SpecFromThrift(const Spec& spec) {
  CompactionSpec out;
  KVC_ASSIGN_OR_RETURN(out.method, ParseMethod(spec.method));
  out.ratio = spec.ratio;
  out.budget = spec.budget;
  KVC_ASSIGN_OR_RETURN(out.allocator, ParseAllocator(spec.allocator));
  KVC_ASSIGN_OR_RETURN(out.am.selection, ParseAmSelection(spec.am_selection));
  KVC_ASSIGN_OR_RETURN(out.am.selector, ParseMethod(spec.am_selector));
  out.heldout_fraction = spec.heldout_fraction;
  out.seed = static_cast<uint64_t>(spec.seed);
  out.gate.min_cosine = spec.gate_min_cosine;
  for (const auto& [key, value] : spec.options) {
    KVC_RETURN_IF_ERROR(ApplySpecOption(&out, key, value));
  }
  return out;
}

Spec SpecToThrift(const CompactionSpec& spec) {
  Spec out;
  out.method = MethodName(spec.method);
  out.ratio = spec.ratio;
  out.budget = spec.budget;
  out.allocator = AllocatorName(spec.allocator);
  out.am_selection = AmSelectionName(spec.am.selection);
  out.am_selector = MethodName(spec.am.selector);
  out.heldout_fraction = spec.heldout_fraction;
  out.seed = static_cast<int64_t>(spec.seed);
  out.gate_min_cosine = spec.gate.min_cosine;
  out.options = NonDefaultSpecOptions(spec);
  return out;
}

Result<engine::CompactRequest> RequestFromThrift(const CompactRequest& request) {
  engine::CompactRequest out;
  out.request_id = request.request_id;
  out.tenant = request.tenant;
  out.model = request.model;
  out.block_hashes = request.block_hashes;
  KVC_ASSIGN_OR_RETURN(out.spec, SpecFromThrift(request.spec));
  if (request.__isset.upload_session) {
    out.upload_session = static_cast<uint64_t>(request.upload_session);
  }
  if (request.__isset.inline_payload) out.inline_payload = request.inline_payload;
  if (request.deadline_ms < 0) {
    return Status::InvalidArgument("deadline_ms is negative; use 0 for the worker's default");
  }
  out.deadline = std::chrono::milliseconds(request.deadline_ms);
  return out;
}

Layout LayoutToThrift(const KvLayout& layout) {
  Layout out;
  out.n_layers = layout.n_layers;
  out.n_kv_heads = layout.n_kv_heads;
  out.n_q_heads = layout.n_q_heads;
  out.head_dim = layout.head_dim;
  out.dtype = DTypeName(layout.dtype);
  out.tokens = layout.tokens;
  return out;
}

Result<KvLayout> LayoutFromThrift(const Layout& layout) {
  KvLayout out;
  out.n_layers = layout.n_layers;
  out.n_kv_heads = layout.n_kv_heads;
  out.n_q_heads = layout.n_q_heads;
  out.head_dim = layout.head_dim;
  KVC_ASSIGN_OR_RETURN(out.dtype, ParseDType(layout.dtype));
  out.tokens = layout.tokens;
  return out;
}

Manifest ManifestToThrift(const engine::EntryInfo& entry) {
  Manifest out;
  out.block_hash = entry.block_hash;
  out.spec_hash = entry.spec_hash;
  out.layout = LayoutToThrift(entry.layout);
  out.entries = entry.entries;
  out.method = entry.method;
  out.created_ms = entry.created_ms;
  out.fidelity = FidelityToThrift(entry.fidelity);
  out.payload_bytes = static_cast<int64_t>(entry.payload_bytes);
  out.attributes = entry.attributes;
  return out;
}

Result<engine::EntryInfo> ManifestFromThrift(const Manifest& manifest) {
  engine::EntryInfo out;
  out.block_hash = manifest.block_hash;
  out.spec_hash = manifest.spec_hash;
  KVC_ASSIGN_OR_RETURN(out.layout, LayoutFromThrift(manifest.layout));
  out.entries = manifest.entries;
  out.method = manifest.method;
  out.created_ms = manifest.created_ms;
  out.fidelity = FidelityFromThrift(manifest.fidelity);
  out.payload_bytes = static_cast<uint64_t>(manifest.payload_bytes);
  out.attributes = manifest.attributes;
  return out;
}

CompactResult ResultToThrift(const engine::CompactOutcome& outcome) {
  CompactResult out;
  out.request_id = outcome.request_id;
  out.manifest = ManifestToThrift(outcome.entry);
  out.stored = outcome.stored;
  out.achieved_ratio = outcome.achieved_ratio;
  out.queue_ms = outcome.queue_ms;
  out.compute_ms = outcome.compute_ms;
  out.timings_json = outcome.timings_json;
  return out;
}

JobStatus JobToThrift(const engine::JobInfo& job) {
  JobStatus out;
  out.job_id = static_cast<int64_t>(job.id);
  switch (job.state) {
    case engine::JobState::kQueued:
      out.state = JobState::QUEUED;
      break;
    case engine::JobState::kRunning:
      out.state = JobState::RUNNING;
      break;
    case engine::JobState::kSucceeded:
      out.state = JobState::SUCCEEDED;
      break;
    case engine::JobState::kFailed:
      out.state = JobState::FAILED;
      break;
    case engine::JobState::kCancelled:
      out.state = JobState::CANCELLED;
      break;
  }
  out.request_id = job.request_id;
  if (job.outcome) out.__set_result(ResultToThrift(*job.outcome));
  if (!job.error.ok()) {
    out.error_code = CodeName(job.error.code());
    out.error_message = job.error.message();
  }
  out.submitted_ms = job.submitted_ms;
  return out;
}

LookupResult LookupToThrift(const engine::LookupOutcome& lookup) {
  LookupResult out;
  out.matched_blocks = static_cast<int32_t>(lookup.matched_blocks);
  if (lookup.entry) out.__set_manifest(ManifestToThrift(*lookup.entry));
  return out;
}

Stats StatsToThrift(const engine::EngineStats& s) {
  Stats out;
  out.uptime_ms = s.uptime_ms;
  out.queue_depth = static_cast<int32_t>(s.queue_depth);
  out.queue_capacity = static_cast<int32_t>(s.queue_capacity);
  out.running_jobs = static_cast<int32_t>(s.running_jobs);
  out.jobs_submitted = static_cast<int64_t>(s.jobs_submitted);
  out.jobs_succeeded = static_cast<int64_t>(s.jobs_succeeded);
  out.jobs_failed = static_cast<int64_t>(s.jobs_failed);
  out.jobs_cancelled = static_cast<int64_t>(s.jobs_cancelled);
  out.jobs_rejected = static_cast<int64_t>(s.jobs_rejected);
  out.jobs_expired = static_cast<int64_t>(s.jobs_expired);
  out.staged_uploads = static_cast<int64_t>(s.staged_uploads);
  out.staged_bytes = static_cast<int64_t>(s.staged_bytes);
  out.staging_budget_bytes = static_cast<int64_t>(s.staging_budget_bytes);
  out.hot = TierToThrift(s.store.hot);
  out.warm = TierToThrift(s.store.warm);
  out.cold = TierToThrift(s.store.cold);
  out.store_puts = static_cast<int64_t>(s.store.puts);
  out.store_deletes = static_cast<int64_t>(s.store.deletes);
  out.store_lookups = static_cast<int64_t>(s.store.lookups);
  out.executor = s.executor;
  return out;
}

}  // namespace kvc::rpc
