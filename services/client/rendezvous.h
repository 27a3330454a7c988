// Rendezvous (highest-random-weight) hashing: every (worker, key) pair gets a pseudo-random
// weight and a key's workers are ranked by decreasing weight. Every client that spells the
// workers the same way (WorkerAddress::id) ranks them the same way, with no coordination; adding
// or removing a worker moves only the keys whose first choice it is or becomes.
//
//   weight(worker, key) = XXH3-64(key, seed = XXH3-64(worker id))
//
// XXH3's output is defined bit-for-bit on every platform, so the ranking is the same across
// processes, builds and machines. Ties (astronomically rare) go to the lower index.
//
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvc::client {

// The weight of `worker_id` for `key`.
uint64_t RendezvousWeight(std::string_view worker_id, std::span<const uint8_t> key);

// Indices of `worker_ids` (0..n-1) ordered by decreasing weight for `key`: the first is the
// key's home, the rest its fallbacks in order. Empty for an empty list.
std::vector<size_t> RendezvousOrder(std::span<const std::string> worker_ids,
                                    std::span<const uint8_t> key);

}  // namespace kvc::client
