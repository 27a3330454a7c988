#include "services/transport/payload.h"

#include <cstring>

namespace kvc::transport {
namespace {

void Add(OutgoingPayload* p, TensorRole role, int layer, const Tensor& t) {
  p->descriptor.tensors.push_back(TensorDesc{role, layer, t.dtype(), t.shape(), t.nbytes()});
  p->tensors.push_back(t);
}

Tensor ViewOf(const TensorDesc& d, const StagingRef& buf) {
  return Tensor::View(d.dtype, d.shape, buf->data(), buf);
}

}  // namespace

Result<OutgoingPayload> MakeUploadPayload(const KvCache& cache) {
  KVC_RETURN_IF_ERROR(cache.Validate(/*check_finite=*/false));
  OutgoingPayload p;
  p.descriptor.kind = PayloadKind::kKvCache;
  p.descriptor.layout = cache.layout;
  p.descriptor.metadata = cache.metadata;
  for (int l = 0; l < cache.layout.n_layers; ++l) {
    const LayerKv& x = cache.layers[l];
    Add(&p, TensorRole::kK, l, x.k);
    Add(&p, TensorRole::kV, l, x.v);
    if (x.q_window) Add(&p, TensorRole::kQWindow, l, *x.q_window);
    if (x.q_ref) Add(&p, TensorRole::kQRef, l, *x.q_ref);
  }
  return p;
}

Result<OutgoingPayload> MakeFetchPayload(const CompactedCache& cache) {
  KVC_RETURN_IF_ERROR(cache.Validate());
  OutgoingPayload p;
  p.descriptor.kind = PayloadKind::kCompacted;
  p.descriptor.layout = cache.layout;
  p.descriptor.metadata = cache.metadata;
  for (int l = 0; l < cache.layout.n_layers; ++l) {
    const CompactedLayer& x = cache.layers[l];
    Add(&p, TensorRole::kK, l, x.k);
    Add(&p, TensorRole::kV, l, x.v);
    Add(&p, TensorRole::kBeta, l, x.beta);
    Tensor offsets = Tensor::Empty(DType::kI64, {static_cast<int64_t>(x.offsets.size())});
    std::memcpy(offsets.raw(), x.offsets.data(), x.offsets.size() * sizeof(int64_t));
    Add(&p, TensorRole::kOffsets, l, offsets);
  }
  return p;
}

Result<KvCache> BuildKvCache(const PayloadDescriptor& desc,
                             const std::vector<StagingRef>& buffers) {
  KvCache cache;
  cache.layout = desc.layout;
  cache.metadata = desc.metadata;
  cache.layers.resize(desc.layout.n_layers);
  for (size_t i = 0; i < desc.tensors.size(); ++i) {
    const TensorDesc& d = desc.tensors[i];
    LayerKv& layer = cache.layers[d.layer];
    Tensor t = ViewOf(d, buffers[i]);
    switch (d.role) {
      case TensorRole::kK:
        layer.k = std::move(t);
        break;
      case TensorRole::kV:
        layer.v = std::move(t);
        break;
      case TensorRole::kQWindow:
        layer.q_window = std::move(t);
        break;
      case TensorRole::kQRef:
        layer.q_ref = std::move(t);
        break;
      default:
        return Status::InvalidArgument("kv cache payload carries a compacted tensor");
    }
  }
  KVC_RETURN_IF_ERROR(cache.Validate(/*check_finite=*/false));
  return cache;
}

Result<CompactedCache> BuildCompactedCache(const PayloadDescriptor& desc,
                                           const std::vector<StagingRef>& buffers) {
  CompactedCache cache;
  cache.layout = desc.layout;
  cache.metadata = desc.metadata;
  cache.layers.resize(desc.layout.n_layers);
  for (size_t i = 0; i < desc.tensors.size(); ++i) {
    const TensorDesc& d = desc.tensors[i];
    CompactedLayer& layer = cache.layers[d.layer];
    switch (d.role) {
      case TensorRole::kK:
        layer.k = ViewOf(d, buffers[i]);
        break;
      case TensorRole::kV:
        layer.v = ViewOf(d, buffers[i]);
        break;
      case TensorRole::kBeta:
        layer.beta = ViewOf(d, buffers[i]);
        break;
      case TensorRole::kOffsets: {
        layer.offsets.resize(static_cast<size_t>(d.shape[0]));
        if (d.nbytes) std::memcpy(layer.offsets.data(), buffers[i]->data(), d.nbytes);
        break;
      }
      default:
        return Status::InvalidArgument("compacted payload carries a query tensor");
    }
  }
  KVC_RETURN_IF_ERROR(cache.Validate());
  return cache;
}

}  // namespace kvc::transport
