#include <cmath>
#include <string>

#include "kernels/cuda/cholesky.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/lstsq.cuh"

namespace kvc::cuda {
namespace {

constexpr int kRidgeBlock = 256;
constexpr int kTile = 32;
constexpr int kTileRows = 8;

__global__ void __launch_bounds__(kRidgeBlock) AddRidgeKernel(float* g, int64_t m, double coef) {
  double trace = 0.0;
  for (int64_t i = threadIdx.x; i < m; i += kRidgeBlock) trace += double(g[i * (m + 1)]);
  trace = BlockSum<kRidgeBlock>(trace);
  const float lambda = float(trace * coef);
  for (int64_t i = threadIdx.x; i < m; i += kRidgeBlock) g[i * (m + 1)] += lambda;
}

// 32 x 32 tiles through shared memory; blocks of 32 x 8 threads.
__global__ void TransposeKernel(const float* __restrict__ in, int64_t rows, int64_t cols,
                                float* __restrict__ out) {
  __shared__ float tile[kTile][kTile + 1];
  const int64_t c0 = int64_t(blockIdx.x) * kTile;
  const int64_t r0 = int64_t(blockIdx.y) * kTile;
  for (int k = threadIdx.y; k < kTile; k += kTileRows) {
    const int64_t r = r0 + k, c = c0 + threadIdx.x;
    if (r < rows && c < cols) tile[k][threadIdx.x] = in[r * cols + c];
  }
  __syncthreads();
  for (int k = threadIdx.y; k < kTile; k += kTileRows) {
    const int64_t oc = c0 + k, orow = r0 + threadIdx.x;  // out row = in column
    if (oc < cols && orow < rows) out[oc * rows + orow] = tile[threadIdx.x][k];
  }
}

// Per-head bookkeeping for one call.
struct HeadSystem {
  int64_t head = 0;
  int64_t t = 0;  // kept keys (columns of A_b)
  int64_t m = 0;  // order of the system
  bool row_form = false;
  double coef = 0.0;  // lambda / trace before retries
  const float* a = nullptr;
  const float* b = nullptr;
  float* g = nullptr;
  float* rhs = nullptr;
};

Status FormGram(cublasHandle_t blas, const HeadSystem& h, int64_t rows, int retry,
                cudaStream_t stream) {
  KVC_RETURN_IF_ERROR(Gram(blas, h.a, rows, h.t, h.t, h.row_form, h.g, h.m));
  return FromCuda(LaunchAddRidge(h.g, h.m, h.coef * std::pow(10.0, retry), stream),
                  "RidgeLeastSquares: ridge");
}

Status FormRhs(cublasHandle_t blas, const HeadSystem& h, int64_t rows, int64_t r,
               cudaStream_t stream) {
  if (h.row_form) {  // column-major rows x r is row-major r x rows = B^T
    return FromCuda(LaunchTranspose(h.b, rows, r, h.rhs, stream), "RidgeLeastSquares: B^T");
  }
  GemmShape s;  // column-major t x r is row-major r x t = B^T A
  s.m = r;
  s.n = h.t;
  s.k = rows;
  s.op_a = Op::kT;
  s.op_b = Op::kN;
  s.lda = r;
  s.ldb = h.t;
  s.ldc = h.t;
  return Gemm(blas, s, 1.f, h.b, h.a, 0.f, h.rhs, MathMode::kF32);
}

Status WriteSolution(cublasHandle_t blas, const HeadSystem& h, int64_t rows, int64_t r, float* c,
                     cudaStream_t stream) {
  if (!h.row_form) {  // rhs holds C^T as row-major r x t
    return FromCuda(LaunchTranspose(h.rhs, r, h.t, c, stream), "RidgeLeastSquares: C");
  }
  GemmShape s;  // C = A^T W, with rhs holding W^T as row-major r x rows
  s.m = h.t;
  s.n = r;
  s.k = rows;
  s.op_a = Op::kT;
  s.op_b = Op::kT;
  s.lda = h.t;
  s.ldb = rows;
  s.ldc = r;
  return Gemm(blas, s, 1.f, h.a, h.rhs, 0.f, c, MathMode::kF32);
}

// Factors every system, rebuilding failed ones with a larger ridge.
Status FactorWithRetries(cublasHandle_t blas, cusolverDnHandle_t solver,
                         std::vector<HeadSystem>& heads, int64_t rows, int max_retries,
                         DeviceMemoryPool& pool, cudaStream_t stream, std::vector<int>* retries) {
  std::vector<size_t> todo(heads.size());
  for (size_t i = 0; i < heads.size(); ++i) todo[i] = i;
  for (int round = 0; !todo.empty(); ++round) {
    std::vector<SpdSystem> systems;
    for (size_t i : todo) systems.push_back({heads[i].g, heads[i].rhs, heads[i].m});
    std::vector<int> infos;
    KVC_RETURN_IF_ERROR(CholeskyFactor(solver, systems, &infos, pool, stream));
    std::vector<size_t> failed;
    for (size_t k = 0; k < todo.size(); ++k) {
      if (infos[k] != 0) failed.push_back(todo[k]);
    }
    if (!failed.empty() && round == max_retries) {
      const HeadSystem& h = heads[failed[0]];
      return Status::Internal("RidgeLeastSquares: head " + std::to_string(h.head) + " (order " +
                              std::to_string(h.m) + ") not positive definite after " +
                              std::to_string(max_retries) + " ridge increases");
    }
    for (size_t i : failed) {
      (*retries)[heads[i].head] = round + 1;
      KVC_RETURN_IF_ERROR(FormGram(blas, heads[i], rows, round + 1, stream));
    }
    todo = std::move(failed);
  }
  return Status::OK();
}

Status CheckLstsq(const RaggedLayout& layout, int64_t rows, const float* a, const float* b,
                  int64_t r, const LstsqOptions& o, const float* c) {
  KVC_RETURN_IF_ERROR(CheckRagged(layout, rows, "RidgeLeastSquares"));
  if (r < 1 || r > 65536 || !(o.ridge >= 0.0) || !(o.min_relative_ridge >= 0.0) ||
      o.max_retries < 0) {
    return Status::InvalidArgument("RidgeLeastSquares: bad r or options");
  }
  if (layout.total() > 0 && (a == nullptr || b == nullptr || c == nullptr)) {
    return Status::InvalidArgument("RidgeLeastSquares: null pointer");
  }
  if (CeilDiv(rows, kTile) > 65535 || CeilDiv(r, kTile) > 65535) {
    return Status::InvalidArgument("RidgeLeastSquares: rows or r too large for the transpose");
  }
  return Status::OK();
}

}  // namespace

cudaError_t LaunchAddRidge(float* g, int64_t m, double coef, cudaStream_t stream) {
  AddRidgeKernel<<<1, kRidgeBlock, 0, stream>>>(g, m, coef);
  return cudaGetLastError();
}

cudaError_t LaunchTranspose(const float* in, int64_t rows, int64_t cols, float* out,
                            cudaStream_t stream) {
  const dim3 grid(unsigned(CeilDiv(cols, kTile)), unsigned(CeilDiv(rows, kTile)));
  TransposeKernel<<<grid, dim3(kTile, kTileRows), 0, stream>>>(in, rows, cols, out);
  return cudaGetLastError();
}

Status RidgeLeastSquares(cublasHandle_t blas, cusolverDnHandle_t solver, const float* a,
                         const RaggedLayout& layout, int64_t rows, const float* b, int64_t r,
                         const LstsqOptions& o, float* c, DeviceMemoryPool& pool,
                         cudaStream_t stream, LstsqReport* report) {
  KVC_RETURN_IF_ERROR(CheckLstsq(layout, rows, a, b, r, o, c));
  std::vector<HeadSystem> heads;
  int64_t g_total = 0, rhs_total = 0;
  for (int64_t h = 0; h < layout.batch(); ++h) {
    HeadSystem s;
    s.head = h;
    s.t = layout.cols(h);
    if (s.t == 0) continue;
    s.row_form = rows < s.t;
    s.m = s.row_form ? rows : s.t;
    s.coef = o.ridge / double(s.t) + o.min_relative_ridge / double(s.m);
    s.a = a + rows * layout.offset(h);
    s.b = b + h * rows * r;
    heads.push_back(s);
    g_total += s.m * s.m;
    rhs_total += s.m * r;
  }
  std::vector<int> retries(size_t(layout.batch()), 0);
  KVC_ASSIGN_OR_RETURN(DeviceBuffer gbuf, pool.AllocateArray<float>(size_t(g_total)));
  KVC_ASSIGN_OR_RETURN(DeviceBuffer rbuf, pool.AllocateArray<float>(size_t(rhs_total)));
  int64_t g_off = 0, r_off = 0;
  for (HeadSystem& s : heads) {
    s.g = gbuf.as<float>() + g_off;
    s.rhs = rbuf.as<float>() + r_off;
    g_off += s.m * s.m;
    r_off += s.m * r;
    KVC_RETURN_IF_ERROR(FormGram(blas, s, rows, 0, stream));
    KVC_RETURN_IF_ERROR(FormRhs(blas, s, rows, r, stream));
  }
  KVC_RETURN_IF_ERROR(
      FactorWithRetries(blas, solver, heads, rows, o.max_retries, pool, stream, &retries));
  std::vector<SpdSystem> systems;
  for (const HeadSystem& s : heads) systems.push_back({s.g, s.rhs, s.m});
  KVC_RETURN_IF_ERROR(CholeskySolve(solver, blas, systems, r, pool, stream));
  for (const HeadSystem& s : heads) {
    KVC_RETURN_IF_ERROR(WriteSolution(blas, s, rows, r, c + layout.offset(s.head) * r, stream));
  }
  if (report != nullptr) {
    report->retries = retries;
    report->row_form.assign(size_t(layout.batch()), false);
    for (const HeadSystem& s : heads) report->row_form[size_t(s.head)] = s.row_form;
  }
  return Status::OK();
}

}  // namespace kvc::cuda
