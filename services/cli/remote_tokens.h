// Token ids for `kvcompact put | lookup | fetch` (remote.h): parsed from text, read from a
// dump's metadata, or derived from its content.
//
// Derived ids: id_t = the first 4 bytes (little-endian) of SHA-256(layer 0's keys at position t,
// every KV head in order, raw bytes), masked to 31 bits. A model's keys at a position depend
// only on the tokens up to it, so two dumps of one prefix derive the same ids for that prefix
// as long as their key bytes agree there (the same engine and precision); the ids are not the
// real tokens, so such keys never match keys built from real ids.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/kv_cache.h"
#include "common/status.h"

namespace kvc::cli {

// "1,2,3" or "[1,2,3]" (spaces allowed around ids): non-negative int32 ids, at least one.
// InvalidArgument naming the offending entry otherwise.
Result<std::vector<int32_t>> ParseTokenList(std::string_view text);

// The derived ids above, one per token of `cache`. REQUIRES: cache.Validate(false) is OK.
std::vector<int32_t> DeriveTokens(const KvCache& cache);

enum class TokenOrigin { kGiven, kMetadata, kDerived };

struct DumpTokens {
  std::vector<int32_t> ids;
  TokenOrigin origin = TokenOrigin::kMetadata;
  std::string note;  // what a person should know about where the ids came from (may be empty)
};

// Token ids for `cache`: `given` when non-empty (InvalidArgument unless it has exactly
// cache.layout.tokens ids), else metadata "tokens" when it parses to exactly that many ids,
// else DeriveTokens (with a note) — unless `require_metadata`, which makes a missing or
// malformed "tokens" InvalidArgument.
Result<DumpTokens> TokensForDump(const KvCache& cache, const std::vector<int32_t>& given,
                                 bool require_metadata);

}  // namespace kvc::cli
