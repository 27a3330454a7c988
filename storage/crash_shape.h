// What the crash test's child writes and how both sides open the store (shared by
// crash_child.cc and crash_test.cc so they cannot drift apart).
#pragma once

#include <string>

#include "storage/testing.h"
#include "storage/tiered_store.h"

namespace kvc::storage {

// Entries of about 10-130 KB, ragged, deterministic in the key.
inline CompactedCache CrashTestCache(uint64_t key) {
  testing::CacheShape shape;
  shape.n_layers = 4;
  shape.n_kv_heads = 4;
  shape.n_q_heads = 8;
  shape.head_dim = 64;
  shape.tokens = 256;
  shape.max_budget = 32;
  return testing::MakeCache(key, shape);
}

// Sync on (the guarantee under test), a small warm tier so entries keep moving to cold, small
// memtables so flushes to SST and blob files happen during the run.
inline TieredStoreOptions CrashTestOptions(const std::string& warm, const std::string& cold) {
  TieredStoreOptions o;
  o.warm.path = warm;
  o.cold.path = cold;
  o.warm.capacity_bytes = 1 << 20;
  o.warm.write_buffer_size = 1 << 20;
  o.cold.write_buffer_size = 1 << 20;
  o.sync = true;
  o.maintenance_interval = std::chrono::milliseconds(0);
  return o;
}

}  // namespace kvc::storage
