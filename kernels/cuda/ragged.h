// Ragged batches: B matrices that share a row count but differ in column count (per-head key
// budgets). Matrix b has cols(b) = offsets[b+1] - offsets[b] columns and is stored row-major,
// densely (leading dimension cols(b)), at element offset rows * offsets[b] of one buffer.
// Per-column vectors (scores, beta) of the batch are stored at offsets[b] + j. A uniform batch is
// the special case offsets[b] = b * cols; no padding is ever stored.
//
// Thread safety: RaggedLayout is immutable after creation; concurrent const use is safe.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "kernels/cuda/memory_pool.h"

namespace kvc::cuda {

// What kernels receive: a plain struct passed by value.
struct RaggedView {
  const int64_t* offsets = nullptr;  // device, batch + 1 entries
  int64_t batch = 0;
  int64_t rows = 0;        // rows of every matrix
  int64_t max_cols = 0;    // max over b of cols(b)
  int64_t total_cols = 0;  // offsets[batch]
};

class RaggedLayout {
 public:
  RaggedLayout() = default;

  // REQUIRES (else InvalidArgument): offsets.size() >= 2, offsets[0] == 0, non-decreasing.
  // Copies the offsets to the device on `stream` (the copy is ordered before later work on it).
  static Result<RaggedLayout> FromOffsets(std::vector<int64_t> offsets, DeviceMemoryPool& pool,
                                          cudaStream_t stream);
  // Offsets are the running sum of counts. REQUIRES: counts non-empty, every count >= 0.
  static Result<RaggedLayout> FromCounts(const std::vector<int64_t>& counts, DeviceMemoryPool& pool,
                                         cudaStream_t stream);
  // batch matrices of `cols` columns each. REQUIRES: batch >= 1, cols >= 0.
  static Result<RaggedLayout> Uniform(int64_t batch, int64_t cols, DeviceMemoryPool& pool,
                                      cudaStream_t stream);

  int64_t batch() const { return host_.empty() ? 0 : int64_t(host_.size()) - 1; }
  // REQUIRES: 0 <= b < batch().
  int64_t cols(int64_t b) const { return host_[b + 1] - host_[b]; }
  int64_t offset(int64_t b) const { return host_[b]; }
  int64_t total() const { return host_.empty() ? 0 : host_.back(); }
  int64_t max_cols() const { return max_cols_; }
  const std::vector<int64_t>& offsets() const { return host_; }
  const int64_t* device_offsets() const { return dev_.as<const int64_t>(); }

  // The kernel-side view for matrices of `rows` rows.
  RaggedView View(int64_t rows) const;

 private:
  std::vector<int64_t> host_;
  DeviceBuffer dev_;
  int64_t max_cols_ = 0;
};

}  // namespace kvc::cuda

namespace kvc::cuda {

// Shared entry-point check: a created layout with 1 <= batch <= 65535 (a grid dimension),
// 1 <= rows <= INT32_MAX. InvalidArgument naming `op` otherwise.
Status CheckRagged(const RaggedLayout& layout, int64_t rows, const char* op);

}  // namespace kvc::cuda
