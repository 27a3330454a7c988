// NCCL across the local GPUs (design §5): one communicator per device of this process, made
// together with ncclCommInitAll (a single-process clique; one GPU is a communicator of size one),
// and the collectives the GPU backend needs, issued from one host thread as an NCCL group.
//
// Built with or without NCCL (KVC_HAVE_NCCL, set by kernels/cuda/CMakeLists.txt when nccl.h and
// libnccl are found). Without NCCL a single device still works (the all-gather is a device
// copy); several devices are NotSupported.
//
// Stream semantics: collectives are queued on the caller's streams (one per rank, each on that
// rank's device) and return without waiting; synchronise the streams before reading results.
// Thread safety: one collective at a time per NcclComms (NCCL communicators are not
// thread-safe); the owner serialises calls.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <memory>
#include <string_view>
#include <vector>

#include "common/status.h"

#if KVC_HAVE_NCCL
#include <nccl.h>
#else
struct ncclComm;  // nccl.h's opaque communicator, so the layout does not depend on the build
#endif

namespace kvc::cuda {

// Whether this build has NCCL (several devices per backend).
bool NcclBuilt();

#if KVC_HAVE_NCCL
// OK for ncclSuccess. Otherwise "<what>: <ncclGetErrorString>", mapped: ncclInvalidArgument /
// ncclInvalidUsage -> InvalidArgument, ncclSystemError / ncclRemoteError -> Unavailable,
// ncclUnhandledCudaError -> Internal (with cudaGetLastError's text), the rest -> Internal.
Status FromNccl(ncclResult_t result, std::string_view what);
#endif

class NcclComms {
 public:
  // One communicator per entry of `devices` (CUDA indices; rank r is devices[r]).
  // REQUIRES (else InvalidArgument): devices non-empty, distinct, each in [0, DeviceCount()).
  // NotSupported for more than one device in a build without NCCL; Unavailable without a
  // device; NCCL's errors through FromNccl.
  static Result<std::unique_ptr<NcclComms>> Create(const std::vector<int>& devices);
  ~NcclComms();
  NcclComms(const NcclComms&) = delete;
  NcclComms& operator=(const NcclComms&) = delete;

  int size() const { return static_cast<int>(devices_.size()); }
  // CUDA index of rank r. REQUIRES: 0 <= r < size().
  int device(int r) const { return devices_[static_cast<size_t>(r)]; }

  // All-gather of `count` floats per rank: recv[q][r * count + i] = send[r][i] for every pair of
  // ranks (q, r). send[r] and recv[r] are device memory of device(r); recv[r] holds size() * count
  // floats and must not overlap send[r] unless send[r] == recv[r] + r * count (in place).
  // streams[r] is a stream of device(r). Queued as one group; nothing synchronises.
  // REQUIRES (else InvalidArgument): every vector has size() entries, non-null pointers.
  Status AllGather(const std::vector<const float*>& send, const std::vector<float*>& recv,
                   size_t count, const std::vector<cudaStream_t>& streams);

 private:
  explicit NcclComms(std::vector<int> devices) : devices_(std::move(devices)) {}
  std::vector<int> devices_;
  std::vector<ncclComm*> comms_;  // one per rank; empty without NCCL
};

}  // namespace kvc::cuda
