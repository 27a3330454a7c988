#include <string>
#include <utility>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/device.h"

namespace kvc::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int64_t kMaxChunks = 65535;  // grid.x cap; threads stride past it

struct JobTable {
  ConvertJob jobs[kMaxConvertJobs];  // 24 * 64 bytes: inside the 4 KiB parameter limit
};

template <typename In, typename Out, typename Conv>
__global__ void __launch_bounds__(kBlock) ConvertKernel(JobTable table) {
  const ConvertJob job = table.jobs[blockIdx.y];
  const In* src = static_cast<const In*>(job.src);
  Out* dst = static_cast<Out*>(job.dst);
  const int64_t stride = int64_t(gridDim.x) * kBlock;
  for (int64_t i = int64_t(blockIdx.x) * kBlock + threadIdx.x; i < job.count; i += stride) {
    dst[i] = Conv{}(src[i]);
  }
}

struct WidenHalf {
  __device__ float operator()(uint16_t h) const { return HalfBitsToFloat(h); }
};
struct WidenBf16 {
  __device__ float operator()(uint16_t h) const { return Bf16BitsToFloat(h); }
};
struct NarrowHalf {
  __device__ uint16_t operator()(float f) const { return FloatToHalfBits(f); }
};
struct NarrowBf16 {
  __device__ uint16_t operator()(float f) const { return FloatToBf16Bits(f); }
};

bool IsHalf(DType t) { return t == DType::kF16 || t == DType::kBF16; }

}  // namespace

bool DeviceConvertSupported(DType from, DType to) {
  if (from == to) return IsFloating(from) || from == DType::kI32 || from == DType::kI64;
  return (IsHalf(from) && to == DType::kF32) || (from == DType::kF32 && IsHalf(to));
}

cudaError_t LaunchConvert(DType from, DType to, const ConvertJob* jobs, int num_jobs,
                          cudaStream_t stream) {
  if (num_jobs <= 0) return cudaSuccess;
  if (num_jobs > kMaxConvertJobs || from == to) return cudaErrorInvalidValue;
  JobTable table;
  int64_t longest = 0;
  for (int i = 0; i < num_jobs; ++i) {
    table.jobs[i] = jobs[i];
    longest = longest > jobs[i].count ? longest : jobs[i].count;
  }
  if (longest == 0) return cudaSuccess;
  const dim3 grid(
      unsigned(CeilDiv(longest, kBlock) < kMaxChunks ? CeilDiv(longest, kBlock) : kMaxChunks),
      unsigned(num_jobs));
  if (from == DType::kF16 && to == DType::kF32) {
    ConvertKernel<uint16_t, float, WidenHalf><<<grid, kBlock, 0, stream>>>(table);
  } else if (from == DType::kBF16 && to == DType::kF32) {
    ConvertKernel<uint16_t, float, WidenBf16><<<grid, kBlock, 0, stream>>>(table);
  } else if (from == DType::kF32 && to == DType::kF16) {
    ConvertKernel<float, uint16_t, NarrowHalf><<<grid, kBlock, 0, stream>>>(table);
  } else if (from == DType::kF32 && to == DType::kBF16) {
    ConvertKernel<float, uint16_t, NarrowBf16><<<grid, kBlock, 0, stream>>>(table);
  } else {
    return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

Status ConvertBatchOnDevice(DType from, DType to, const std::vector<ConvertJob>& jobs,
                            cudaStream_t stream) {
  if (!DeviceConvertSupported(from, to)) {
    return Status::NotSupported(std::string("ConvertOnDevice: ") + DTypeName(from) + " -> " +
                                DTypeName(to));
  }
  for (const ConvertJob& j : jobs) {
    if (j.count < 0 || (j.count > 0 && (j.src == nullptr || j.dst == nullptr))) {
      return Status::InvalidArgument("ConvertOnDevice: bad job");
    }
  }
  if (from == to) {
    for (const ConvertJob& j : jobs) {
      if (j.count == 0) continue;
      KVC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(j.dst, j.src, size_t(j.count) * DTypeSize(from),
                                               cudaMemcpyDeviceToDevice, stream),
                               "ConvertOnDevice: copy");
    }
    return Status::OK();
  }
  for (size_t i = 0; i < jobs.size(); i += kMaxConvertJobs) {
    const int num =
        int(jobs.size() - i < size_t(kMaxConvertJobs) ? jobs.size() - i : size_t(kMaxConvertJobs));
    KVC_CUDA_RETURN_IF_ERROR(LaunchConvert(from, to, jobs.data() + i, num, stream),
                             "ConvertOnDevice");
  }
  return Status::OK();
}

Status ConvertOnDevice(DType from, const void* src, DType to, void* dst, int64_t count,
                       cudaStream_t stream) {
  return ConvertBatchOnDevice(from, to, {ConvertJob{src, dst, count}}, stream);
}

Result<DeviceBuffer> UploadAsF32(DType dtype, const void* host, size_t count,
                                 DeviceMemoryPool& pool, cudaStream_t stream) {
  if (dtype == DType::kF32) {
    KVC_ASSIGN_OR_RETURN(DeviceBuffer out, pool.AllocateArray<float>(count));
    if (count > 0) {
      KVC_CUDA_RETURN_IF_ERROR(
          cudaMemcpyAsync(out.get(), host, count * sizeof(float), cudaMemcpyHostToDevice, stream),
          "UploadAsF32");
    }
    return Result<DeviceBuffer>(std::move(out));
  }
  if (!IsHalf(dtype)) {
    return Status::NotSupported(std::string("UploadAsF32: ") + DTypeName(dtype));
  }
  if (count > 0 && host == nullptr) return Status::InvalidArgument("UploadAsF32: null host");
  KVC_ASSIGN_OR_RETURN(DeviceBuffer raw, pool.AllocateArray<uint16_t>(count));
  if (count > 0) {  // context.h's Upload is host-compiler only
    KVC_CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(raw.get(), host, count * sizeof(uint16_t), cudaMemcpyHostToDevice, stream),
        "UploadAsF32");
  }
  KVC_ASSIGN_OR_RETURN(DeviceBuffer out, pool.AllocateArray<float>(count));
  KVC_RETURN_IF_ERROR(
      ConvertOnDevice(dtype, raw.get(), DType::kF32, out.get(), int64_t(count), stream));
  return Result<DeviceBuffer>(
      std::move(out));  // `raw` goes back to the pool; stream order keeps the conversion safe
}

}  // namespace kvc::cuda
