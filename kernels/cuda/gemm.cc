#include "kernels/cuda/gemm.h"

#include <climits>
#include <string>

#include "kernels/cuda/device.h"

namespace kvc::cuda {
namespace {

cublasOperation_t ToCublas(Op op) { return op == Op::kN ? CUBLAS_OP_N : CUBLAS_OP_T; }

bool FitsInt(int64_t v) { return v >= 1 && v <= INT_MAX; }

std::string Describe(const GemmShape& s) {
  return "gemm m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) +
         " k=" + std::to_string(s.k) + " lda=" + std::to_string(s.lda) +
         " ldb=" + std::to_string(s.ldb) + " ldc=" + std::to_string(s.ldc) +
         " batch=" + std::to_string(s.batch);
}

Status ValidateGemm(const GemmShape& s, const float* a, const float* b, const float* c) {
  if (!FitsInt(s.m) || !FitsInt(s.n) || !FitsInt(s.k) || !FitsInt(s.batch)) {
    return Status::InvalidArgument(Describe(s) + ": sizes must be in [1, INT32_MAX]");
  }
  const int64_t a_cols = s.op_a == Op::kN ? s.k : s.m;
  const int64_t b_cols = s.op_b == Op::kN ? s.n : s.k;
  if (s.lda < a_cols || s.ldb < b_cols || s.ldc < s.n || !FitsInt(s.lda) || !FitsInt(s.ldb) ||
      !FitsInt(s.ldc)) {
    return Status::InvalidArgument(Describe(s) + ": leading dimension too small");
  }
  if (s.stride_a < 0 || s.stride_b < 0 || s.stride_c < 0) {
    return Status::InvalidArgument(Describe(s) + ": negative stride");
  }
  if (a == nullptr || b == nullptr || c == nullptr) {
    return Status::InvalidArgument(Describe(s) + ": null pointer");
  }
  return Status::OK();
}

}  // namespace

const char* MathModeName(MathMode m) { return m == MathMode::kTf32 ? "tf32" : "f32"; }

cublasStatus_t LaunchGemm(cublasHandle_t handle, const GemmShape& s, float alpha, const float* a,
                          const float* b, float beta, float* c, MathMode mode) {
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands and the
  // roles of m and n; each stored row-major matrix is its own transpose in column-major terms.
  const cublasComputeType_t compute =
      mode == MathMode::kTf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  return cublasGemmStridedBatchedEx(
      handle, ToCublas(s.op_b), ToCublas(s.op_a), int(s.n), int(s.m), int(s.k), &alpha, b,
      CUDA_R_32F, int(s.ldb), static_cast<long long>(s.stride_b), a, CUDA_R_32F, int(s.lda),
      static_cast<long long>(s.stride_a), &beta, c, CUDA_R_32F, int(s.ldc),
      static_cast<long long>(s.stride_c), int(s.batch), compute, CUBLAS_GEMM_DEFAULT);
}

Status Gemm(cublasHandle_t handle, const GemmShape& s, float alpha, const float* a, const float* b,
            float beta, float* c, MathMode mode) {
  KVC_RETURN_IF_ERROR(ValidateGemm(s, a, b, c));
  return FromCublas(LaunchGemm(handle, s, alpha, a, b, beta, c, mode), Describe(s));
}

Status AttentionScores(cublasHandle_t handle, const float* q, const float* k, float* s,
                       int64_t batch, int64_t n, int64_t T, int64_t d, float scale, MathMode mode) {
  GemmShape g;
  g.m = n;
  g.n = T;
  g.k = d;
  g.op_a = Op::kN;
  g.op_b = Op::kT;
  g.lda = d;
  g.ldb = d;
  g.ldc = T;
  g.stride_a = n * d;
  g.stride_b = T * d;
  g.stride_c = n * T;
  g.batch = batch;
  return Gemm(handle, g, scale, q, k, 0.f, s, mode).WithContext("AttentionScores");
}

Status AttentionOutputs(cublasHandle_t handle, const float* p, const float* v, float* y,
                        int64_t batch, int64_t n, int64_t T, int64_t d, MathMode mode) {
  GemmShape g;
  g.m = n;
  g.n = d;
  g.k = T;
  g.lda = T;
  g.ldb = d;
  g.ldc = d;
  g.stride_a = n * T;
  g.stride_b = T * d;
  g.stride_c = n * d;
  g.batch = batch;
  return Gemm(handle, g, 1.f, p, v, 0.f, y, mode).WithContext("AttentionOutputs");
}

Status Gram(cublasHandle_t handle, const float* a, int64_t rows, int64_t cols, int64_t lda,
            bool outer, float* g, int64_t ldg) {
  const int64_t order = outer ? rows : cols;
  if (!FitsInt(rows) || !FitsInt(cols) || lda < cols || !FitsInt(lda) || ldg < order ||
      !FitsInt(ldg) || a == nullptr || g == nullptr) {
    return Status::InvalidArgument("Gram: bad shape rows=" + std::to_string(rows) +
                                   " cols=" + std::to_string(cols) + " lda=" + std::to_string(lda) +
                                   " ldg=" + std::to_string(ldg));
  }
  // The stored row-major A is the column-major matrix M = A^T (cols x rows, ld lda).
  // outer: A A^T = M^T M -> syrk with trans = T, n = rows, k = cols.
  // inner: A^T A = M M^T -> syrk with trans = N, n = cols, k = rows.
  const float one = 1.f, zero = 0.f;
  const cublasOperation_t trans = outer ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int n = int(order);
  const int k = int(outer ? cols : rows);
  return FromCublas(cublasSsyrk(handle, CUBLAS_FILL_MODE_LOWER, trans, n, k, &one, a, int(lda),
                                &zero, g, int(ldg)),
                    "Gram (cublasSsyrk)");
}

}  // namespace kvc::cuda
