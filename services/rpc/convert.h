// Translation between the Thrift types of idl/kvcompact.thrift and the engine's plain types.
// Used by the RPC handler (wire -> engine -> wire) and usable by clients (CompactionSpec ->
// wire Spec, wire Manifest -> EntryInfo), so both sides agree on every field.
//
// Spec options: the Thrift Spec carries the common fields by name and every other field of
// CompactionSpec in `options`, keyed by its dotted name, valued as text:
//   threads                                                     integer
//   gate.escalation, gate.max_rounds                            number, integer
//   am.fit_beta, am.fit_values, am.keys_as_queries, am.keys_as_queries_fit    bool
//   am.nnls_pg_steps, am.refine_rounds                          integer
//   am.ridge                                                    number
//   am.omp_fast_schedule  "up_to:keys_per_step:refit_every,..." ("max" for the last up_to)
//   okdmd.k_modes, okdmd.sinks, okdmd.recent, okdmd.refresh_every, okdmd.power_iters  integer
//   okdmd.lambda, okdmd.sigma                                   number
//   streaming.sinks                                             integer
//   h2o.recent_fraction                                         number
//   snapkv.kernel, snapkv.window                                integer
//   snapkv.pooling, dynamickv.pooling                           "avg" | "max"
//   pyramid.beta                                                number
//   dynamickv.window, dynamickv.kernel, dynamickv.every_m       integer
//   dynamickv.radio_max                                         number
//   dynamickv.progressive, d2o.merge                            bool
//   d2o.hh_ratio, d2o.recent_ratio, d2o.ema_alpha, d2o.ema_beta number
//   d2o.sinks                                                   integer
//   d2o.uncompressed_layers                                     "0,1,-1" (may be empty)
// Booleans are "true"/"false" (or "1"/"0"); numbers are decimal (shortest round-trip form when
// written). An unknown key or a value that does not parse is InvalidArgument naming the key;
// range checks are CompactionSpec::Validate's.
//
// Thread safety: pure functions.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "idl/kvcompact_types.h"
#include "kernels/spec.h"
#include "services/engine/engine_types.h"

namespace kvc::rpc {

// The option keys above, sorted.
std::vector<std::string> SpecOptionKeys();
// Sets one option. InvalidArgument for an unknown key or a bad value (spec unchanged).
Status ApplySpecOption(CompactionSpec* spec, std::string_view key, std::string_view value);

// The options of `spec` whose text differs from a default CompactionSpec's.
std::map<std::string, std::string> NonDefaultSpecOptions(const CompactionSpec& spec);

// Wire -> engine. NotSupported for an unknown method, allocator or AM selection name (as
// kernels/spec.h parses them); InvalidArgument for a bad option. Does not run
// CompactionSpec::Validate (the engine does).
Result<CompactionSpec> SpecFromThrift(const Spec& spec);
// Engine -> wire: the named fields, plus every option whose value differs from a default
// CompactionSpec. SpecFromThrift(SpecToThrift(s)) has the same ToJson() (and SpecHash) as s.
Spec SpecToThrift(const CompactionSpec& spec);

// Wire -> engine; copies the payload. Errors as SpecFromThrift; InvalidArgument for a negative
// deadline.
Result<engine::CompactRequest> RequestFromThrift(const CompactRequest& request);

Layout LayoutToThrift(const KvLayout& layout);
Result<KvLayout> LayoutFromThrift(const Layout& layout);
Manifest ManifestToThrift(const engine::EntryInfo& entry);
// Wire -> engine, for clients. NotSupported for an unknown dtype.
Result<engine::EntryInfo> ManifestFromThrift(const Manifest& manifest);
CompactResult ResultToThrift(const engine::CompactOutcome& outcome);
JobStatus JobToThrift(const engine::JobInfo& job);
LookupResult LookupToThrift(const engine::LookupOutcome& lookup);
Stats StatsToThrift(const engine::EngineStats& stats);

}  // namespace kvc::rpc
