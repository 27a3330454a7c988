#include "kernels/cuda/ragged.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>

#include "kernels/cuda/device.h"

namespace kvc::cuda {

Result<RaggedLayout> RaggedLayout::FromOffsets(std::vector<int64_t> offsets, DeviceMemoryPool& pool,
                                               cudaStream_t stream) {
  if (offsets.size() < 2) return Status::InvalidArgument("ragged offsets need >= 2 entries");
  if (offsets[0] != 0) return Status::InvalidArgument("ragged offsets[0] must be 0");
  int64_t max_cols = 0;
  for (size_t i = 1; i < offsets.size(); ++i) {
    int64_t c = offsets[i] - offsets[i - 1];
    if (c < 0) {
      return Status::InvalidArgument("ragged offsets decrease at index " + std::to_string(i));
    }
    max_cols = std::max(max_cols, c);
  }
  RaggedLayout out;
  out.host_ = std::move(offsets);
  out.max_cols_ = max_cols;
  KVC_ASSIGN_OR_RETURN(out.dev_, pool.AllocateArray<int64_t>(out.host_.size()));
  KVC_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(out.dev_.get(), out.host_.data(), out.host_.size() * sizeof(int64_t),
                      cudaMemcpyHostToDevice, stream),
      "upload ragged offsets");
  return out;
}

Result<RaggedLayout> RaggedLayout::FromCounts(const std::vector<int64_t>& counts,
                                              DeviceMemoryPool& pool, cudaStream_t stream) {
  if (counts.empty()) return Status::InvalidArgument("ragged counts are empty");
  std::vector<int64_t> offsets(counts.size() + 1, 0);
  for (size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] < 0) {
      return Status::InvalidArgument("ragged count " + std::to_string(i) + " is negative");
    }
    offsets[i + 1] = offsets[i] + counts[i];
  }
  return FromOffsets(std::move(offsets), pool, stream);
}

Result<RaggedLayout> RaggedLayout::Uniform(int64_t batch, int64_t cols, DeviceMemoryPool& pool,
                                           cudaStream_t stream) {
  if (batch < 1 || cols < 0) {
    return Status::InvalidArgument("uniform ragged layout needs batch >= 1 and cols >= 0");
  }
  return FromCounts(std::vector<int64_t>(size_t(batch), cols), pool, stream);
}

RaggedView RaggedLayout::View(int64_t rows) const {
  RaggedView v;
  v.offsets = device_offsets();
  v.batch = batch();
  v.rows = rows;
  v.max_cols = max_cols_;
  v.total_cols = total();
  return v;
}

}  // namespace kvc::cuda

namespace kvc::cuda {

Status CheckRagged(const RaggedLayout& layout, int64_t rows, const char* op) {
  if (layout.batch() < 1 || layout.batch() > 65535) {
    return Status::InvalidArgument(std::string(op) + ": batch " + std::to_string(layout.batch()) +
                                   " outside [1, 65535]");
  }
  if (rows < 1 || rows > INT32_MAX) {
    return Status::InvalidArgument(std::string(op) + ": rows " + std::to_string(rows) +
                                   " outside [1, INT32_MAX]");
  }
  if (layout.total() > 0 && layout.device_offsets() == nullptr) {
    return Status::InvalidArgument(std::string(op) + ": layout has no device offsets");
  }
  return Status::OK();
}

}  // namespace kvc::cuda
