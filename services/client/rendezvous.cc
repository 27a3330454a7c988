#include "services/client/rendezvous.h"

#include <xxhash.h>

#include <algorithm>
#include <numeric>

namespace kvc::client {

uint64_t RendezvousWeight(std::string_view worker_id, std::span<const uint8_t> key) {
  const XXH64_hash_t seed = XXH3_64bits(worker_id.data(), worker_id.size());
  return XXH3_64bits_withSeed(key.data(), key.size(), seed);
}

std::vector<size_t> RendezvousOrder(std::span<const std::string> worker_ids,
                                    std::span<const uint8_t> key) {
  std::vector<uint64_t> weight(worker_ids.size());
  for (size_t i = 0; i < worker_ids.size(); ++i) weight[i] = RendezvousWeight(worker_ids[i], key);
  std::vector<size_t> order(worker_ids.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return weight[a] > weight[b]; });
  return order;
}

}  // namespace kvc::client
