// Fuzzes the safetensors decoder and the KV cache loaders built on it:
//   SafetensorsReader::Parse -> Get every tensor (reading all of its bytes)
//   -> KvCacheFromSafetensors / CompactedCacheFromSafetensors
// and checks one invariant: whatever the reader accepts and the writer can re-encode must decode
// again to the same names, metadata and bytes.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "common/kv_io.h"
#include "common/safetensors.h"

namespace {

void Check(bool ok) {
  if (!ok) std::abort();  // reported by libFuzzer as a crash, with the input saved
}

uint64_t TouchBytes(const kvc::Tensor& t) {
  uint64_t sum = 0;
  const auto* p = static_cast<const uint8_t*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) sum += p[i];
  return sum;
}

void CheckReencode(const kvc::SafetensorsReader& r, const std::vector<kvc::NamedTensor>& tensors) {
  kvc::Result<std::vector<uint8_t>> bytes = kvc::EncodeSafetensors(tensors, r.metadata());
  if (!bytes.ok()) {
    // The writer is stricter than the reader only about empty tensor names.
    bool has_empty_name = false;
    for (const auto& t : tensors) has_empty_name |= t.name.empty();
    Check(has_empty_name);
    return;
  }
  kvc::Result<kvc::SafetensorsReader> again = kvc::SafetensorsReader::ParseCopy(*bytes);
  Check(again.ok());
  Check(again->metadata() == r.metadata());
  Check(again->size() == tensors.size());
  for (const auto& t : tensors) {
    kvc::Result<kvc::Tensor> u = again->Get(t.name);
    Check(u.ok());
    Check(u->dtype() == t.tensor.dtype() && u->shape() == t.tensor.shape());
    Check(t.tensor.nbytes() == 0 || std::memcmp(u->raw(), t.tensor.raw(), t.tensor.nbytes()) == 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvc::Result<kvc::SafetensorsReader> r =
      kvc::SafetensorsReader::Parse(std::span<const uint8_t>(data, size), nullptr, "fuzz");
  if (!r.ok()) return 0;
  std::vector<kvc::NamedTensor> tensors;
  volatile uint64_t sink = 0;
  for (const std::string& name : r->names()) {
    kvc::Result<kvc::Tensor> t = r->Get(name);
    Check(t.ok());
    sink = sink + TouchBytes(*t);
    tensors.push_back({name, *t});
  }
  CheckReencode(*r, tensors);
  kvc::KvCacheFromSafetensors(*r).status().IgnoreError();
  kvc::CompactedCacheFromSafetensors(*r).status().IgnoreError();
  return 0;
}
