// How the engine describes a compacted cache (EntryInfo) and what it stores beside it.
// Internal to services/engine.
//
// A stored entry's EntryExtras::attributes hold the caller's identity and a fidelity summary,
// so lookups answer from the manifest alone without reading tensors:
//   "tenant", "model", "request_id", "blocks"        the request
//   "fidelity.measured" ("1"/"0"), "fidelity.mean_cosine", "fidelity.min_cosine",
//   "fidelity.p10_cosine", "fidelity.mean_rel_l2", "fidelity.mass_error"
//   "gate.requested", "gate.passed" ("1"/"0"), "gate.rounds"
// The full fidelity report stays in the cache metadata ("fidelity", written by the compactor).
// EntryInfo::attributes lists only the request keys; the fidelity keys become EntryFidelity.
#pragma once

#include <map>
#include <string>

#include "kernels/compactor.h"
#include "services/engine/engine_types.h"
#include "storage/format.h"

namespace kvc::engine {

// Who asked for an entry.
struct EntryOrigin {
  std::string tenant;
  std::string model;
  std::string request_id;
  size_t blocks = 0;  // length of the chain the entry was built from
};

// The attributes described above for `result`.
std::map<std::string, std::string> EntryAttributes(const EntryOrigin& origin,
                                                   const CompactionResult& result);

// EntryInfo of a freshly computed cache with those attributes.
EntryInfo EntryInfoFromResult(const std::string& block_hash, const std::string& spec_hash,
                              const CompactionResult& result,
                              const std::map<std::string, std::string>& attributes,
                              int64_t created_ms);

// EntryInfo of a stored entry from its manifest.
EntryInfo EntryInfoFromManifest(const std::string& block_hash, const std::string& spec_hash,
                                const storage::Manifest& manifest);

}  // namespace kvc::engine
