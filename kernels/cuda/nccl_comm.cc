#include "kernels/cuda/nccl_comm.h"

#include <algorithm>
#include <string>
#include <utility>

#include "kernels/cuda/device.h"

namespace kvc::cuda {
namespace {

Status CheckDevices(const std::vector<int>& devices) {
  if (devices.empty()) return Status::InvalidArgument("NCCL: no devices given");
  const int count = DeviceCount();
  if (count == 0) return Status::Unavailable("NCCL: no CUDA device: " + NoDeviceReason());
  std::vector<int> sorted = devices;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    return Status::InvalidArgument("NCCL: a device is listed twice");
  }
  if (sorted.front() < 0 || sorted.back() >= count) {
    return Status::InvalidArgument("NCCL: device index outside [0, " + std::to_string(count) + ")");
  }
  return Status::OK();
}

}  // namespace

#if KVC_HAVE_NCCL

bool NcclBuilt() { return true; }

Status FromNccl(ncclResult_t result, std::string_view what) {
  if (result == ncclSuccess) return Status::OK();
  std::string msg = std::string(what) + ": " + ncclGetErrorString(result);
  switch (result) {
    case ncclInvalidArgument:
    case ncclInvalidUsage:
      return Status::InvalidArgument(std::move(msg));
    case ncclSystemError:
    case ncclRemoteError:
      return Status::Unavailable(std::move(msg));
    case ncclUnhandledCudaError:
      return Status::Internal(msg + " (" + cudaGetErrorString(cudaGetLastError()) + ")");
    default:
      return Status::Internal(std::move(msg));
  }
}

Result<std::unique_ptr<NcclComms>> NcclComms::Create(const std::vector<int>& devices) {
  KVC_RETURN_IF_ERROR(CheckDevices(devices));
  std::unique_ptr<NcclComms> c(new NcclComms(devices));
  std::vector<ncclComm_t> comms(devices.size(), nullptr);
  KVC_RETURN_IF_ERROR(
      FromNccl(ncclCommInitAll(comms.data(), static_cast<int>(devices.size()), devices.data()),
               "ncclCommInitAll over " + std::to_string(devices.size()) + " device(s)"));
  c->comms_.assign(comms.begin(), comms.end());
  return c;
}

NcclComms::~NcclComms() {
  for (ncclComm_t comm : comms_) {
    if (comm != nullptr) ncclCommDestroy(comm);
  }
}

Status NcclComms::AllGather(const std::vector<const float*>& send, const std::vector<float*>& recv,
                            size_t count, const std::vector<cudaStream_t>& streams) {
  const size_t n = devices_.size();
  if (send.size() != n || recv.size() != n || streams.size() != n) {
    return Status::InvalidArgument("NcclComms::AllGather: need one buffer and stream per rank");
  }
  for (size_t r = 0; r < n; ++r) {
    if (send[r] == nullptr || recv[r] == nullptr) {
      return Status::InvalidArgument("NcclComms::AllGather: null buffer");
    }
  }
  KVC_RETURN_IF_ERROR(FromNccl(ncclGroupStart(), "ncclGroupStart"));
  Status first;
  for (size_t r = 0; r < n; ++r) {
    Status st = FromNccl(ncclAllGather(send[r], recv[r], count, ncclFloat32, comms_[r], streams[r]),
                         "ncclAllGather on rank " + std::to_string(r));
    if (first.ok() && !st.ok()) first = std::move(st);
  }
  // The group must be closed whatever happened inside it.
  Status end = FromNccl(ncclGroupEnd(), "ncclGroupEnd (all-gather)");
  return first.ok() ? end : first;
}

#else  // !KVC_HAVE_NCCL

bool NcclBuilt() { return false; }

Result<std::unique_ptr<NcclComms>> NcclComms::Create(const std::vector<int>& devices) {
  KVC_RETURN_IF_ERROR(CheckDevices(devices));
  if (devices.size() > 1) {
    return Status::NotSupported(
        "this build has no NCCL (nccl.h / libnccl not found at configure time): one GPU only");
  }
  return std::unique_ptr<NcclComms>(new NcclComms(devices));
}

NcclComms::~NcclComms() = default;

Status NcclComms::AllGather(const std::vector<const float*>& send, const std::vector<float*>& recv,
                            size_t count, const std::vector<cudaStream_t>& streams) {
  if (send.size() != 1 || recv.size() != 1 || streams.size() != 1 || send[0] == nullptr ||
      recv[0] == nullptr) {
    return Status::InvalidArgument("NcclComms::AllGather: need one buffer and stream per rank");
  }
  if (count == 0 || send[0] == recv[0]) return Status::OK();
  return FromCuda(cudaMemcpyAsync(recv[0], send[0], count * sizeof(float), cudaMemcpyDeviceToDevice,
                                  streams[0]),
                  "all-gather (one device, no NCCL)");
}

#endif  // KVC_HAVE_NCCL

}  // namespace kvc::cuda
