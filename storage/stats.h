// Counters of the tiered store. A snapshot, read without stopping the store: fields are each
// exact but not mutually consistent while writes run.
#pragma once

#include <cstdint>

namespace kvc::storage {

struct TierStats {
  uint64_t entries = 0;      // entries held now
  uint64_t bytes = 0;        // logical bytes held now (hot: tensor payload; warm/cold: manifest
                             // record + tensor payload)
  uint64_t hits = 0;         // Get served by this tier
  uint64_t misses = 0;       // Get that reached this tier and did not find a live entry
  uint64_t promotions = 0;   // entries that arrived here from a lower tier (cold -> warm, or a
                             // read from warm/cold -> hot)
  uint64_t demotions = 0;    // entries that left this tier for a lower one (warm -> cold)
  uint64_t evictions = 0;    // entries dropped for capacity (hot LRU, cold capacity, warm
                             // capacity without a cold tier)
  uint64_t expirations = 0;  // entries dropped because their TTL passed
  uint64_t corruptions = 0;  // entries found corrupt (checksum, framing) and removed
};

struct StoreStats {
  TierStats hot;
  TierStats warm;
  TierStats cold;
  uint64_t puts = 0;     // successful Puts
  uint64_t deletes = 0;  // Deletes that removed an entry
  uint64_t lookups = 0;  // LookupLongestPrefix calls
};

}  // namespace kvc::storage
