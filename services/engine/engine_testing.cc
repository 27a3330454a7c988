#include "services/engine/engine_testing.h"

#include <chrono>
#include <span>

#include "common/kv_io.h"
#include "common/safetensors.h"
#include "storage/testing.h"
#include "tests/synth/synth_kv.h"

namespace kvc::engine::testing {

KvCache TinyCache(uint64_t seed, int64_t tokens) {
  SynthOptions o = SynthTiny();
  o.layout.tokens = tokens;
  o.seed = seed;
  o.n_ref = 64;
  o.window = 32;
  o.threads = 1;
  return GenerateSyntheticKv(o).value();
}

std::string PayloadOf(const KvCache& cache) {
  std::vector<uint8_t> bytes = EncodeKvCache(cache).value();
  return std::string(bytes.begin(), bytes.end());
}

std::string RawPayloadOf(const KvCache& cache) {
  std::vector<NamedTensor> tensors;
  for (size_t l = 0; l < cache.layers.size(); ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    tensors.push_back({p + "k", cache.layers[l].k});
    tensors.push_back({p + "v", cache.layers[l].v});
    if (cache.layers[l].q_window) tensors.push_back({p + "q_window", *cache.layers[l].q_window});
    if (cache.layers[l].q_ref) tensors.push_back({p + "q_ref", *cache.layers[l].q_ref});
  }
  SafetensorsMetadata md;
  md["format"] = kKvCacheFormat;
  md["n_layers"] = std::to_string(cache.layout.n_layers);
  md["n_q_heads"] = std::to_string(cache.layout.n_q_heads);
  std::vector<uint8_t> bytes = EncodeSafetensors(tensors, md).value();
  return std::string(bytes.begin(), bytes.end());
}

std::vector<std::string> Chain(uint64_t seed, size_t n) {
  return storage::testing::ChainFor(seed, n);
}

CompactionSpec FastSpec() {
  CompactionSpec spec;
  spec.method = Method::kAttentionMatching;
  spec.ratio = 8;
  spec.threads = 2;
  return spec;
}

CompactRequest InlineRequest(const KvCache& cache, std::vector<std::string> chain,
                             CompactionSpec spec) {
  CompactRequest r;
  r.request_id = "test";
  r.tenant = "tenant-a";
  r.model = "synthetic";
  r.block_hashes = std::move(chain);
  r.spec = std::move(spec);
  r.inline_payload = PayloadOf(cache);
  return r;
}

storage::TieredStoreOptions StoreOptions(const std::string& dir) {
  storage::TieredStoreOptions o;
  o.warm.path = dir + "/warm";
  o.sync = false;
  o.maintenance_interval = std::chrono::milliseconds(0);
  return o;
}

Result<CompactionResult> GatedExecutor::Run(const KvCache& cache, const CompactionSpec& spec) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    ++entered_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return permits_ > 0; });
    --permits_;
  }
  return cpu_->Run(cache, spec);
}

void GatedExecutor::Release(int n) {
  std::lock_guard<std::mutex> lock(mu_);
  permits_ += n;
  cv_.notify_all();
}

bool GatedExecutor::WaitEntered(int n) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return entered_ >= n; });
}

int GatedExecutor::entered() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entered_;
}

}  // namespace kvc::engine::testing
